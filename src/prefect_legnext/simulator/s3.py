"""A real S3 endpoint on loopback (moto's standalone server) for the demo and tests.

boto3 talks to it over HTTP exactly as to AWS, MinIO or R2: only the endpoint URL
differs. Needs the ``simulator`` extra (``pip install 'prefect-legnext[simulator]'``).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

# moto's credentials are never checked; these only satisfy boto3.
LOCAL_ACCESS_KEY = "local-access-key"
LOCAL_SECRET_KEY = "local-secret-key"  # noqa: S105 - a placeholder the local server ignores
LOCAL_REGION = "us-east-1"


class LocalS3Server:
    """moto's S3 server in a background thread on 127.0.0.1, stopped on exit.

    Example:
        ```python
        with LocalS3Server() as s3:
            bucket = s3.create_bucket("legnext-demo")  # a prefect-aws S3Bucket block
        ```
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.endpoint_url = ""
        self._server: Any = None

    def __enter__(self) -> LocalS3Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def bucket_block(self, name: str, folder: str = "") -> S3Bucket:
        """An `S3Bucket` block (unsaved) for bucket `name` on this server."""
        from prefect_aws import AwsCredentials, S3Bucket

        credentials = AwsCredentials(
            aws_access_key_id=LOCAL_ACCESS_KEY,
            aws_secret_access_key=LOCAL_SECRET_KEY,
            region_name=LOCAL_REGION,
            aws_client_parameters={"endpoint_url": self.endpoint_url},
        )
        return S3Bucket(bucket_name=name, credentials=credentials, bucket_folder=folder)

    def create_bucket(self, name: str | None = None, folder: str = "") -> S3Bucket:
        """Create a bucket (a fresh unique name by default) and return its block."""
        block = self.bucket_block(name or f"legnext-{uuid.uuid4().hex[:12]}", folder)
        block.credentials.get_s3_client().create_bucket(Bucket=block.bucket_name)
        return block
