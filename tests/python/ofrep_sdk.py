"""Evaluates flags on a running `vireo serve` with the OpenFeature Python SDK and its OFREP
provider, unchanged. Prints one JSON object: the boolean flag FLAG for every user given, and
the SDK's view of the error cases. Usage: ofrep_sdk.py BASE_URL FLAG USER...
With $VIREO_TOKEN set, the SDK sends it as a bearer token (its documented headers_factory)."""
import json
import os
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext

base, flag, users = sys.argv[1], sys.argv[2], sys.argv[3:]
token = os.environ.get("VIREO_TOKEN")
headers = (lambda: {"Authorization": f"Bearer {token}"}) if token else None
api.set_provider(OFREPProvider(base, headers_factory=headers))
client = api.get_client()


def details(key, ctx, default=False):
    d = client.get_boolean_details(key, default, ctx)
    return {
        "value": d.value,
        "variant": d.variant,
        "reason": str(d.reason.value if hasattr(d.reason, "value") else d.reason),
        "error": d.error_code.value if d.error_code else None,
    }


out = {
    "users": {u: details(flag, EvaluationContext(targeting_key=u)) for u in users},
    "missing_flag": details("no-such-flag", EvaluationContext(targeting_key="u-1"), True),
    "no_targeting_key": details(flag, EvaluationContext(), True),
}
print(json.dumps(out))
