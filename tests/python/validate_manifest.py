"""Validates IoT Edge deployment files against SchemaStore's schemas, offline.

Usage: validate_manifest.py SCHEMA_DIR NAME=FILE [NAME=FILE ...]
  NAME is a schema file name without .json, e.g. azure-iot-edge-deployment-2.0 for a deployable
  manifest, azure-iot-edge-deployment-template-4.0 for a template.

The schemas refer to each other by their https://json.schemastore.org/ ids; every schema in
SCHEMA_DIR is registered under its id so those references resolve without a network.
"""

import json
import pathlib
import sys

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4


def registry(schema_dir: pathlib.Path) -> Registry:
    resources = []
    for path in schema_dir.glob("*.json"):
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a few SchemaStore files are not for us and not strict JSON
        if not isinstance(schema, dict):
            continue
        uri = schema.get("$id") or schema.get("id")
        resource = Resource.from_contents(schema, default_specification=DRAFT4)
        for key in filter(None, {uri, f"https://json.schemastore.org/{path.name}"}):
            resources.append((key, resource))
    return Registry().with_resources(resources)


def main() -> int:
    schema_dir = pathlib.Path(sys.argv[1])
    reg = registry(schema_dir)
    failed = False
    for arg in sys.argv[2:]:
        name, _, file = arg.partition("=")
        schema = json.loads((schema_dir / f"{name}.json").read_text(encoding="utf-8"))
        instance = json.loads(pathlib.Path(file).read_text(encoding="utf-8"))
        validator = jsonschema.validators.validator_for(schema)(schema, registry=reg)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/" + "/".join(str(p) for p in e.absolute_path)
            print(f"{file}: {where}: {e.message} (schema {name})")
        if errors:
            failed = True
        else:
            print(f"{file}: valid against {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
