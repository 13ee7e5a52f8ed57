#!/usr/bin/env python3
"""Checks Kubernetes manifests against the real schemas: built-in kinds against the
Kubernetes OpenAPI schemas that the kubernetes-validate package ships, custom resources
against the openAPIV3Schema of their CustomResourceDefinition (a directory of CRD files).
Strict: a property the schema does not know is an error, as `kubectl apply --validate=strict`
has it (CRD schemas prune unknown fields unless they say x-kubernetes-preserve-unknown-fields).

    validate.py --crds DIR [--kubernetes-version X.Y.Z] FILE...

Prints one line per problem (file, document, path, message); exits 1 if there is any.
"""

import argparse
import copy
import glob
import os
import sys

import jsonschema
import kubernetes_validate
import yaml


def load_crds(directory):
    """(group, version, kind) -> openAPIV3Schema."""
    schemas = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not doc or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    schema = version["schema"]["openAPIV3Schema"]
                    key = (spec["group"], version["name"], spec["names"]["kind"])
                    schemas[key] = strict(schema)
    return schemas


def strict(schema):
    """A copy of an OpenAPI v3 structural schema in which objects with declared properties
    accept no others (what the API server's pruning would silently drop)."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            if node.get("x-kubernetes-int-or-string"):
                node.pop("type", None)
                node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is an ObjectMeta, checked by the API server itself.
    schema.get("properties", {}).get("metadata", {}).pop("additionalProperties", None)
    return schema


def path_of(error):
    return "." + ".".join(str(p) for p in error.absolute_path) if error.absolute_path else "."


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--crds", required=True)
    parser.add_argument("--kubernetes-version", default="1.33.0")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    crds = load_crds(args.crds)
    problems = 0
    checked = 0
    for path in args.files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for n, doc in enumerate(docs):
            where = f"{path} [{n}] {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            api = doc.get("apiVersion", "")
            group, _, version = api.rpartition("/")
            key = (group, version, doc.get("kind"))
            if key in crds:
                validator = jsonschema.Draft7Validator(crds[key])
                errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
                for error in errors:
                    print(f"{where}: {path_of(error)}: {error.message}")
                problems += len(errors)
            elif group.endswith(".x-k8s.io") or "." in group and not group.endswith(".k8s.io"):
                print(f"{where}: no CustomResourceDefinition for {api} {doc.get('kind')}")
                problems += 1
            else:
                try:
                    kubernetes_validate.validate(doc, args.kubernetes_version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    print(f"{where}: {path_of(error)}: {error.message}")
                    problems += 1
                except kubernetes_validate.utils.SchemaNotFoundError as error:
                    print(f"{where}: {error}")
                    problems += 1
            checked += 1
    print(f"checked {checked} documents, {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
