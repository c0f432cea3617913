-- Every revocation written, by any instance or by hand, is announced on the channel
-- identity_revocations when its transaction commits, so that every instance's in-memory
-- revocation cache (PostgresRevocationCache) learns it without a query. The payload is the
-- same JSON document as a message on the AMQP fan-out exchange identity.revocations.
CREATE FUNCTION identity_notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    expires_ms bigint := floor(extract(epoch FROM NEW.expires_at) * 1000)::bigint;
BEGIN
    IF TG_TABLE_NAME = 'identity_revoked_tokens' THEN
        PERFORM pg_notify('identity_revocations',
            json_build_object('jti', NEW.jti, 'user_id', NEW.user_id, 'expires_at_ms', expires_ms)::text);
    ELSE
        PERFORM pg_notify('identity_revocations',
            json_build_object('user_id', NEW.user_id, 'cutoff_ms', NEW.cutoff_ms, 'expires_at_ms', expires_ms)::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER identity_revoked_tokens_notify AFTER INSERT OR UPDATE ON identity_revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION identity_notify_revocation();
CREATE TRIGGER identity_token_cutoffs_notify AFTER INSERT OR UPDATE ON identity_token_cutoffs
    FOR EACH ROW EXECUTE FUNCTION identity_notify_revocation();
