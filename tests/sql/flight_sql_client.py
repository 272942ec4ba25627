#!/usr/bin/env python3
"""Runs one SQL query against Kiln's Arrow Flight SQL endpoint with the ADBC Flight SQL driver
(the client Python, R and Go programs use; the same Go driver backs Grafana's Flight SQL data
source) and prints the rows as JSON lines, or the error as `error: <message>` with exit 1.

    flight_sql_client.py --uri grpc://127.0.0.1:4040 --query SQL [--username U --password P]
    flight_sql_client.py --uri grpc://127.0.0.1:4040 --metadata [--username U --password P]

With --metadata it asks what clients ask before they query (GetSqlInfo through
adbc_get_info, GetCatalogs/GetDbSchemas/GetTables through adbc_get_objects, GetTableTypes,
and GetTables with the columns through adbc_get_table_schema) and prints one JSON object:
{"info": {...}, "objects": [[catalog, schema, table, [column, ...]], ...],
 "table_types": [...], "samples_columns": [[name, type], ...]}.

With --username and --password the driver does Flight's handshake with basic auth and sends
the bearer token the server answers with on every call after.
"""

import argparse
import json
import sys
import warnings

import adbc_driver_flightsql.dbapi as flight_sql


def metadata(conn):
    info = conn.adbc_get_info()
    objects = []
    for catalog in conn.adbc_get_objects(depth="all").read_all().to_pylist():
        for schema in catalog["catalog_db_schemas"] or []:
            for table in schema["db_schema_tables"] or []:
                columns = [c["column_name"] for c in table["table_columns"] or []]
                objects.append([catalog["catalog_name"], schema["db_schema_name"],
                                table["table_name"], columns])
    schema = conn.adbc_get_table_schema("samples")
    return {
        "info": {str(k): v for k, v in info.items()},
        "objects": objects,
        "table_types": conn.adbc_get_table_types(),
        "samples_columns": [[f.name, str(f.type)] for f in schema],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uri", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--query")
    group.add_argument("--metadata", action="store_true")
    parser.add_argument("--username")
    parser.add_argument("--password")
    args = parser.parse_args()
    kwargs = {}
    if args.username is not None:
        kwargs = {"username": args.username, "password": args.password}
    warnings.simplefilter("ignore")  # DB-API autocommit notice
    try:
        with flight_sql.connect(args.uri, db_kwargs=kwargs) as conn:
            if args.metadata:
                print(json.dumps(metadata(conn), default=str, sort_keys=True))
                return 0
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
