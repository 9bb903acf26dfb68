"""AWS's MSK IAM SASL signer for Python, at a fixed time: the reference for msk_iam_reference.rs.

Usage: python msk_iam_reference.py REGION ACCESS_KEY SECRET_KEY SESSION_TOKEN ISO_TIME
Prints {"token": ..., "expiry_ms": ...}.
"""
import json
import sys

from botocore.credentials import CredentialProvider, Credentials
from freezegun import freeze_time
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

region, access_key, secret_key, session_token, at = sys.argv[1:6]


class Fixed(CredentialProvider):
    METHOD = "fixed"

    def load(self):
        return Credentials(access_key, secret_key, session_token or None)


with freeze_time(at):
    token, expiry_ms = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
        region, Fixed()
    )
print(json.dumps({"token": token, "expiry_ms": expiry_ms}))
