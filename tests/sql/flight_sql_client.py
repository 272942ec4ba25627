#!/usr/bin/env python3
"""Runs one SQL query against Kiln's Arrow Flight SQL endpoint with the ADBC Flight SQL driver
(the client Python, R and Go programs use; the same Go driver backs Grafana's Flight SQL data
source) and prints the rows as JSON lines, or the error as `error: <message>` with exit 1.

    flight_sql_client.py --uri grpc://127.0.0.1:4040 --query SQL [--username U --password P]

With --username and --password the driver does Flight's handshake with basic auth and sends
the bearer token the server answers with on every call after.
"""

import argparse
import json
import sys
import warnings

import adbc_driver_flightsql.dbapi as flight_sql


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args()
    kwargs = {}
    if args.username is not None:
        kwargs = {"username": args.username, "password": args.password}
    warnings.simplefilter("ignore")  # DB-API autocommit notice
    try:
        with flight_sql.connect(args.uri, db_kwargs=kwargs) as conn:
            with conn.cursor() as cursor:
                cursor.execute(args.query)
                table = cursor.fetch_arrow_table()
    except Exception as error:  # the driver's errors carry the server's status and message
        print(f"error: {error}")
        return 1
    for row in table.to_pylist():
        print(json.dumps(row, default=str, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
