"""Validates every line of a JSON Lines file of CloudEvents against the CloudEvents 1.0 JSON
schema, formats included (date-time, uri-reference). Prints the count; exits 1 naming the first
invalid event. Usage: validate_events.py SCHEMA.json EVENTS.jsonl"""
import json
import sys

from jsonschema import Draft7Validator, FormatChecker

schema = json.load(open(sys.argv[1]))
validator = Draft7Validator(schema, format_checker=FormatChecker())
n = 0
for line_no, line in enumerate(open(sys.argv[2]), 1):
    event = json.loads(line)
    errors = list(validator.iter_errors(event))
    if errors:
        print(f"line {line_no} ({event.get('type')} {event.get('id')}): {errors[0].message}")
        sys.exit(1)
    if event.get("specversion") != "1.0":
        print(f"line {line_no}: specversion {event.get('specversion')!r}")
        sys.exit(1)
    n += 1
print(n)
