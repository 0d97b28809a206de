"""The independent side of the e-mail sink tests: a real SMTP server and a real
mail parser, both from Python (aiosmtpd and the standard `email` package).

    python smtp_sink.py serve PORT DIR [USER:PASSWORD]
        Serves SMTP on 127.0.0.1:PORT; writes each accepted message to DIR/N.eml and
        its envelope recipients to DIR/N.rcpt; with USER:PASSWORD, requires AUTH
        (PLAIN or LOGIN) over the plain connection. Prints "ready" once listening
        and runs until stdin closes.
    python smtp_sink.py parse FILE...
        Prints one JSON object per mail: its headers of interest, its MIME types and
        its text and HTML parts.
"""

import email
import email.policy
import json
import logging
import os
import sys
import warnings


def serve(port, directory, credentials):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    count = [0]

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            count[0] += 1
            base = os.path.join(directory, "%04d" % count[0])
            with open(base + ".rcpt", "w") as f:
                f.write("\n".join(envelope.rcpt_tos))
            with open(base + ".eml.tmp", "wb") as f:
                f.write(envelope.original_content)
            os.rename(base + ".eml.tmp", base + ".eml")
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        user = auth_data.login.decode()
        password = auth_data.password.decode()
        # handled=False: aiosmtpd then answers a refusal with 535 itself.
        return AuthResult(success=(user + ":" + password) == credentials, handled=False)

    # AUTH over plain text is the point of the test on loopback: not worth a warning.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    options = {}
    if credentials:
        options = dict(authenticator=authenticator, auth_required=True, auth_require_tls=False)
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()


def parse(paths):
    for path in paths:
        with open(path, "rb") as f:
            message = email.message_from_binary_file(f, policy=email.policy.default)
        parts = {}
        for part in message.walk():
            if part.get_content_maintype() == "text":
                parts[part.get_content_type()] = part.get_content()
        print(json.dumps({
            "content_type": message.get_content_type(),
            "subject": str(message["Subject"]),
            "to": [str(a) for a in message["To"].addresses],
            "message_id": str(message["Message-ID"]),
            "list_unsubscribe": message["List-Unsubscribe"] and str(message["List-Unsubscribe"]),
            "list_unsubscribe_post": message["List-Unsubscribe-Post"] and str(message["List-Unsubscribe-Post"]),
            "text": parts.get("text/plain"),
            "html": parts.get("text/html"),
        }))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        parse(sys.argv[2:])
