"""Print the idempotency key real Prefect 1.4.1 computes for each flow of a JSON list.

It runs `prefect.cli.build_register.register_serialized_flow` itself, with a client that
answers its two GraphQL calls (no server), and reports the `idempotency_key` it sent.
Usage: python prefect1_idempotency_keys.py FLOWS.json  → one hex key per line.
"""
import json
import sys
from types import SimpleNamespace as NS

from prefect.cli.build_register import register_serialized_flow


class Client:
    def __init__(self):
        self.sent = None

    def graphql(self, query, variables=None, **kwargs):
        if variables is None:
            return NS(data=NS(flow=[]))
        self.sent = variables["input"]
        return NS(data=NS(create_flow_from_compressed_string=NS(id="new")))


for flow in json.load(open(sys.argv[1])):
    c = Client()
    register_serialized_flow(c, flow, project_id="p", force=False, schedule=False)
    print(c.sent["idempotency_key"])
