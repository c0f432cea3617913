"""A Python (pika) peer of the Identity broker topology, for the end-to-end tests.

    amqp_peer.py consume URL SECONDS LAST
                                       bind an exclusive queue to identity.events ('#'), print
                                       READY, then one JSON line per event until an event of
                                       type LAST arrives or SECONDS pass
    amqp_peer.py publish URL QUEUE TYPE BODY
                                       publish BODY with the given type property to QUEUE
    amqp_peer.py count URL QUEUE       print how many messages QUEUE holds
"""
import json
import sys
import time

import pika


def connect(url):
    return pika.BlockingConnection(pika.URLParameters(url))


def consume(url, seconds, last):
    connection = connect(url)
    channel = connection.channel()
    channel.exchange_declare("identity.events", exchange_type="topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, "identity.events", routing_key="#")
    print("READY", flush=True)
    deadline = time.monotonic() + seconds
    for method, properties, body in channel.consume(queue, inactivity_timeout=0.2):
        if time.monotonic() > deadline:
            break
        if method is None:
            continue
        line = {
            "routing_key": method.routing_key,
            "type": properties.type,
            "message_id": properties.message_id,
            "content_type": properties.content_type,
            "persistent": properties.delivery_mode == 2,
            "body": json.loads(body),
        }
        print(json.dumps(line), flush=True)
        channel.basic_ack(method.delivery_tag)
        if properties.type == last:
            break
    connection.close()


def publish(url, queue, type_, body):
    connection = connect(url)
    channel = connection.channel()
    channel.basic_publish("", queue, body.encode(), pika.BasicProperties(type=type_, message_id="poison", delivery_mode=2))
    connection.close()


def count(url, queue):
    connection = connect(url)
    channel = connection.channel()
    print(channel.queue_declare(queue, passive=True).method.message_count, flush=True)
    connection.close()


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "consume":
        consume(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    elif command == "publish":
        publish(*sys.argv[2:6])
    elif command == "count":
        count(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown command " + command)
