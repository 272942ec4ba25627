"""Azurite helper with the official Azure SDK: creates a container (object_store, which Kiln
uses, reads and writes blobs but does not create containers) or lists a container's blobs.

Usage: azure_blobs.py create <blob endpoint, e.g. http://127.0.0.1:10000> <container>
       azure_blobs.py list <blob endpoint> <container>   (one blob name per line)
"""

import sys

from azure.storage.blob import BlobServiceClient

# Azurite's well-known development account (documented by Microsoft, not a secret).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def main() -> None:
    command, endpoint, container = sys.argv[1], sys.argv[2], sys.argv[3]
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint={endpoint}/{ACCOUNT};"
    )
    service = BlobServiceClient.from_connection_string(connection)
    if command == "create":
        service.create_container(container)
    elif command == "list":
        for blob in service.get_container_client(container).list_blobs():
            print(blob.name)
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
