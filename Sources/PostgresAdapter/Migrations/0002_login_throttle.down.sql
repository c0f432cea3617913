DROP TABLE identity_login_failures;
