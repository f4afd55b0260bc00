#!/usr/bin/env python3
"""Bad configuration: one clear line naming the variable, the value and what is accepted, exit
status 78; --check-config prints the effective settings with secrets hidden."""

import os
import subprocess

from harness import TRANSMITTER_BIN, check, main


def run(env, *args):
    e = {k: v for k, v in os.environ.items() if not k.startswith("TRANSMITTER_")}
    e.update(env)
    return subprocess.run([TRANSMITTER_BIN, "--config", "/dev/null", *args], env=e, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=30)


BAD = [
    ({"TRANSMITTER_BATCH_SIZE": "abc"}, "TRANSMITTER_BATCH_SIZE=abc"),
    ({"TRANSMITTER_BATCH_SIZE": "0"}, "TRANSMITTER_BATCH_SIZE=0"),
    ({"TRANSMITTER_LOG_LEVEL": "LOUD"}, "TRANSMITTER_LOG_LEVEL=LOUD"),
    ({"TRANSMITTER_DESTINATION_URL": "ftp://x"}, "TRANSMITTER_DESTINATION_URL"),
    ({"TRANSMITTER_DESTINATION_URL": "http://plain.example/"}, "TRANSMITTER_DESTINATION_URL"),
    ({"TRANSMITTER_RABBITMQ_URL": "nope"}, "TRANSMITTER_RABBITMQ_URL"),
    ({"TRANSMITTER_RETRY_BACKOFF_MULTIPLIER": "0.5"}, "TRANSMITTER_RETRY_BACKOFF_MULTIPLIER"),
    ({"TRANSMITTER_RABBITMQ_QUEUE_TYPE": "stream"}, "TRANSMITTER_RABBITMQ_QUEUE_TYPE"),
    ({"TRANSMITTER_AUTH_TOKEN_FILE": "/nonexistent/token"}, "/nonexistent/token"),
]


def body(case):
    for env, needle in BAD:
        for args in ((), ("--check-config",)):
            r = run(env, *args)
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            check(r.returncode == 78, f"{env} {' '.join(args)}: exit status 78 (got {r.returncode})")
            check(len(lines) == 1 and needle in lines[0], f"one line naming {needle}: {lines}")

    secret = "s3cr3t-t0ken-value"
    r = run({"TRANSMITTER_AUTH_TOKEN": secret,
             "TRANSMITTER_RABBITMQ_URL": "amqp://user:hunter2@broker:5672/",
             "TRANSMITTER_DATABASE_URL": "postgresql://u:pgpass99@db/x"}, "--check-config")
    check(r.returncode == 0, "--check-config: exit status 0")
    check(secret not in r.stdout + r.stderr and "hunter2" not in r.stdout and "pgpass99" not in r.stdout,
          "--check-config shows no secret")
    check("TRANSMITTER_AUTH_TOKEN=***" in r.stdout, "the token is shown as ***")
    check("TRANSMITTER_BATCH_SIZE=100" in r.stdout, "defaults are printed")

    # Passwords that break the URL's syntax: refused, and still not shown.
    for name, url, pw in (("TRANSMITTER_RABBITMQ_URL", "amqp://u:hun#ter2@broker/", "ter2"),
                          ("TRANSMITTER_DATABASE_URL", "postgresql://u:pg?pass99@db/x", "pass99"),
                          ("TRANSMITTER_DATABASE_URL", "postgresql://u:pg%zzpass99@db/x", "pass99")):
        r = run({name: url}, "--check-config")
        check(r.returncode == 78 and name in r.stderr, f"{name} with a mis-encoded password: exit 78")
        check(pw not in r.stdout + r.stderr, f"... and its line does not show the password: {r.stderr.strip()}")

    # RABBITMQ_URL lists (architecture §10): a bad item is named by its position and text, its password not
    # shown; and the daemon refuses to start with it instead of retrying "cannot parse" for ever.
    for url, needle in (("amqp://u:pw1@h1/,amqp://u:pw2@h2:99999/", "item 2 (amqp://u:***@h2:99999/)"),
                        ("amqp://u:pw1@h1/,amqps://u:pw2@h2/", "item 2 (amqps://u:***@h2/): amqp:// and amqps:// mixed"),
                        ("amqp://u:pw1@h1/,,amqp://h3/", "item 2 (): an empty item"),
                        ("amqp://u:pw1@h1/,", "item 2 (): an empty item"),
                        ("amqp://u:pw1@h1/, nope", "item 2 (nope): not an amqp:// or amqps:// URL"),
                        ("amqp://u:pw1@h1/a/b,amqp://h2/", "item 1 (amqp://u:***@h1/a/b)"),
                        ("amqp://u:pw,1@h1/", "item 1 (amqp://u:***): a ',' in the user name or password")):
        for args in ((), ("--check-config",)):
            r = run({"TRANSMITTER_RABBITMQ_URL": url}, *args)
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            check(r.returncode == 78, f"RABBITMQ_URL={url} {' '.join(args)}: exit status 78 (got {r.returncode})")
            check(len(lines) == 1 and "TRANSMITTER_RABBITMQ_URL=" in lines[0] and needle in lines[0],
                  f"one line naming {needle}: {lines}")
            check("pw1" not in r.stderr and "pw2" not in r.stderr and "pw,1" not in r.stderr,
                  "... without a password")
    r = run({"TRANSMITTER_RABBITMQ_URL": "amqp://u:pw1@h1:5672/,amqp://u:pw2@[::1]:5673/prod"}, "--check-config")
    check(r.returncode == 0 and "TRANSMITTER_RABBITMQ_URL=amqp://u:***@h1:5672/,amqp://u:***@[::1]:5673/prod\n"
          in r.stdout, f"a good list passes and is shown redacted: {r.stderr.strip()}")

    # A bad value in the environment stops a starting daemon the same way, without a secret in its line.
    r = run({"TRANSMITTER_AUTH_TOKEN": secret, "TRANSMITTER_COMPRESSION_LEVEL": "11"})
    check(r.returncode == 78, "the daemon exits 78 on a bad value")
    check(secret not in r.stderr and "TRANSMITTER_COMPRESSION_LEVEL=11" in r.stderr, "its message names the value")

    r = subprocess.run([TRANSMITTER_BIN, "--version"], stdout=subprocess.PIPE, text=True)
    check(r.returncode == 0 and r.stdout.startswith("transmitter "), f"--version: {r.stdout.strip()}")
    r = subprocess.run([TRANSMITTER_BIN, "--config", "/nonexistent.conf", "--check-config"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    check(r.returncode == 78 and "/nonexistent.conf" in r.stderr, "--config with a missing file: exit 78")


if __name__ == "__main__":
    main("config", body)
