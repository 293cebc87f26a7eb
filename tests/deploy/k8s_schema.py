"""Offline schema validation of Kubernetes documents.

Three validators, chosen by a document's ``apiVersion``:

* ``kubernetes.dask.org/v1`` (DaskCluster, DaskWorkerGroup, DaskJob,
  DaskAutoscaler): the ``openAPIV3Schema`` of the operator's CRDs shipped in
  the pinned ``dask-kubernetes`` wheel (its helm chart's ``crds/``), turned
  into JSON Schema with the API server's structural-schema rules and checked
  with ``jsonschema``:

  - an object with ``properties`` (or with neither ``properties`` nor
    ``additionalProperties``) and no ``x-kubernetes-preserve-unknown-fields``
    rejects unknown fields (the API server prunes them; with strict field
    validation, the ``kubectl`` default, it rejects them);
  - ``x-kubernetes-int-or-string`` accepts an integer or a string;
  - ``nullable: true`` accepts null; a null in any other field is pruned
    before validation, as the API server does;
  - ``format: int32``/``int64`` bound integers;
  - the root's ``apiVersion``/``kind`` must name the CRD, and ``metadata`` is
    checked as an ``ObjectMeta`` (below).

* core groups (``v1``, ``apps/v1``, ...): the ``kubernetes`` Python client's
  models, walked recursively through ``openapi_types``/``attribute_map``:
  unknown fields and wrong JSON types are rejected, then the client's own
  deserializer enforces required fields and enums.  Limits: fields the client
  types ``object`` (IntOrString, RawExtension) accept any JSON value, and
  resource quantities are typed ``str`` by the client, so a bare number there
  is rejected although the API server would accept it (stricter, never
  looser); no format/pattern checks (names, label syntax).

* ``monitoring.coreos.com/v1`` PodMonitor/ServiceMonitor: the prometheus
  operator's CRDs are in no pinned wheel, so only a hand-written subset is
  checked: the fields our manifests use (selector as a core
  ``LabelSelector``, namespaceSelector, endpoints' port/path/interval/scheme),
  unknown fields rejected at those levels.  This is *not* the upstream CRD.
"""

from __future__ import annotations

import copy
import functools
import glob
import os
import re
from typing import Any

import jsonschema
import kubernetes.client
import yaml
from kubernetes.client import ApiClient

import dask_kubernetes

#: Where the pinned wheel ships the operator's CRDs.
CRD_DIR = os.path.join(
    os.path.dirname(dask_kubernetes.__file__),
    "operator",
    "deployment",
    "helm",
    "dask-kubernetes-operator",
    "crds",
)

#: libyaml's loader when available: the CRDs are ~18k lines.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


class SchemaError(Exception):
    """A document does not validate; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


# --------------------------------------------------------------------------
# CRD (structural OpenAPI v3) -> JSON Schema


def _nullable(out: dict, s: dict) -> dict:
    if s.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def structural_to_jsonschema(s: dict) -> dict:
    """Convert one node of a CRD ``openAPIV3Schema`` to JSON Schema."""
    out: dict[str, Any] = {}
    if s.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    elif "type" in s:
        out["type"] = s["type"]
    for key in (
        "enum",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "uniqueItems",
        "multipleOf",
        "minProperties",
        "maxProperties",
        "required",
    ):
        if key in s:
            out[key] = s[key]
    fmt = s.get("format")
    if s.get("type") == "integer" and fmt in ("int32", "int64"):
        lo, hi = INT32 if fmt == "int32" else INT64
        out.setdefault("minimum", lo)
        out.setdefault("maximum", hi)
    for key in ("allOf", "anyOf", "oneOf"):
        if key in s:
            out.setdefault("allOf", []).append(
                {key: [structural_to_jsonschema(x) for x in s[key]]}
            )
    if "not" in s:
        out["not"] = structural_to_jsonschema(s["not"])
    if "items" in s:
        out["items"] = structural_to_jsonschema(s["items"])
    is_object = s.get("type") == "object" or "properties" in s
    if is_object:
        props = {k: structural_to_jsonschema(v) for k, v in s.get("properties", {}).items()}
        if s.get("x-kubernetes-embedded-resource"):
            for k in ("apiVersion", "kind"):
                props.setdefault(k, {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        if props:
            out["properties"] = props
        ap = s.get("additionalProperties")
        if isinstance(ap, dict):
            out["additionalProperties"] = structural_to_jsonschema(ap)
        elif ap is True or s.get("x-kubernetes-preserve-unknown-fields"):
            pass  # unknown fields are kept
        else:
            out["additionalProperties"] = False
    return _nullable(out, s)


def prune_nulls(data: Any, s: dict) -> Any:
    """Drop null fields whose schema is not ``nullable`` (API server pruning)."""
    if isinstance(data, dict) and (s.get("type") == "object" or "properties" in s):
        props = s.get("properties", {})
        ap = s.get("additionalProperties")
        out = {}
        for k, v in data.items():
            sub = props.get(k, ap if isinstance(ap, dict) else None)
            if v is None and sub is not None and not sub.get("nullable"):
                continue
            out[k] = prune_nulls(v, sub) if sub is not None else v
        return out
    if isinstance(data, list) and isinstance(s.get("items"), dict):
        return [prune_nulls(x, s["items"]) for x in data]
    return data


@functools.lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """``{(apiVersion, kind): openAPIV3Schema}`` of every CRD in the wheel."""
    out = {}
    paths = sorted(glob.glob(os.path.join(CRD_DIR, "*.yaml")))
    if not paths:
        raise FileNotFoundError(f"no CRDs under {CRD_DIR}")
    for path in paths:
        with open(path) as f:
            crd = yaml.load(f, Loader=_LOADER)
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


@functools.lru_cache(maxsize=None)
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    root = copy.deepcopy(crd_schemas()[(api_version, kind)])
    schema = structural_to_jsonschema(root)
    schema.setdefault("properties", {})
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = {"type": "object"}  # checked as ObjectMeta
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def validate_crd_object(doc: dict) -> None:
    """Validate a Dask operator custom resource against the wheel's CRD."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in crd_schemas():
        raise SchemaError([f"no CRD for apiVersion={key[0]!r} kind={key[1]!r}"])
    pruned = prune_nulls(doc, crd_schemas()[key])
    v = _crd_validator(*key)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(v.iter_errors(pruned), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if "metadata" in doc:
        errors += [f"metadata{e}" for e in model_errors(doc["metadata"], "V1ObjectMeta", "")]
    else:
        errors.append("metadata: required")
    if errors:
        raise SchemaError(errors)


# --------------------------------------------------------------------------
# Core objects: the kubernetes client's models

_MODELS = kubernetes.client.models
# Type strings of the client's models: "List[V1Container]", "Dict[str, str]"
# (older clients: "list[...]", "dict(str, ...)").
_LIST = re.compile(r"^[Ll]ist\[(.*)\]$")
_DICT = re.compile(r"^(?:Dict\[str, (.*)\]|dict\(str, (.*)\))$")


def model_errors(data: Any, type_str: str, path: str) -> list[str]:
    """Structural errors of ``data`` against a kubernetes client type string."""
    if data is None:
        return []  # absent/null optional field; required ones are checked later
    m = _LIST.match(type_str)
    if m:
        if not isinstance(data, list):
            return [f"{path}: expected a list, got {type(data).__name__}"]
        inner = m.group(1)
        errs = []
        for i, x in enumerate(data):
            errs += model_errors(x, inner, f"{path}[{i}]")
        return errs
    m = _DICT.match(type_str)
    if m:
        if not isinstance(data, dict):
            return [f"{path}: expected a mapping, got {type(data).__name__}"]
        inner = m.group(1) or m.group(2)
        errs = []
        for k, v in data.items():
            if not isinstance(k, str):
                errs.append(f"{path}: key {k!r} is not a string")
            errs += model_errors(v, inner, f"{path}.{k}")
        return errs
    if type_str == "str":
        return [] if isinstance(data, str) else [f"{path}: expected a string, got {data!r}"]
    if type_str == "bool":
        return [] if isinstance(data, bool) else [f"{path}: expected a boolean, got {data!r}"]
    if type_str == "int":
        ok = isinstance(data, int) and not isinstance(data, bool)
        return [] if ok else [f"{path}: expected an integer, got {data!r}"]
    if type_str == "float":
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
        return [] if ok else [f"{path}: expected a number, got {data!r}"]
    if type_str == "bytes":
        return [] if isinstance(data, str) else [f"{path}: expected a base64 string"]
    if type_str in ("datetime", "date"):
        return [] if isinstance(data, str) else [f"{path}: expected a timestamp string"]
    if type_str == "object":
        return []  # IntOrString / RawExtension: any JSON value
    cls = getattr(_MODELS, type_str, None)
    if cls is None:
        return [f"{path}: unknown model type {type_str}"]
    if not isinstance(data, dict):
        return [f"{path}: expected a {type_str} mapping, got {type(data).__name__}"]
    by_json = {j: attr for attr, j in cls.attribute_map.items()}
    errs = []
    for key, value in data.items():
        attr = by_json.get(key)
        if attr is None:
            errs.append(f"{path}.{key}: unknown field of {type_str}")
            continue
        errs += model_errors(value, cls.openapi_types[attr], f"{path}.{key}")
    return errs


def model_class_name(api_version: str, kind: str) -> str:
    """``apps/v1`` + ``Deployment`` -> ``V1Deployment``."""
    version = api_version.rsplit("/", 1)[-1]
    return version[0].upper() + version[1:] + kind


def validate_core_object(doc: dict) -> None:
    """Validate a core Kubernetes object with the client's models."""
    name = model_class_name(str(doc.get("apiVersion")), str(doc.get("kind")))
    if getattr(_MODELS, name, None) is None:
        raise SchemaError([f"no kubernetes client model {name}"])
    validate_model(doc, name)


def validate_model(data: Any, type_str: str) -> None:
    """Unknown fields, JSON types, then the client's required/enum checks."""
    errors = model_errors(data, type_str, "")
    if not errors:
        try:
            ApiClient()._ApiClient__deserialize(copy.deepcopy(data), type_str)
        except (ValueError, TypeError) as e:
            errors.append(f"{type_str}: {e}")
    if errors:
        raise SchemaError(errors)


# --------------------------------------------------------------------------
# prometheus-operator: a hand-written subset (no CRD in any pinned wheel)

_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string", "pattern": "^/"},
        "interval": {"type": "string", "pattern": _DURATION},
        "scrapeTimeout": {"type": "string", "pattern": _DURATION},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "honorLabels": {"type": "boolean"},
    },
}
_NAMESPACE_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}


def _monitor_schema(kind: str, endpoints_key: str) -> dict:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints_key],
                "properties": {
                    "selector": {"type": "object"},  # checked as V1LabelSelector
                    "namespaceSelector": _NAMESPACE_SELECTOR,
                    "jobLabel": {"type": "string"},
                    endpoints_key: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


MONITOR_SCHEMAS = {
    "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
    "ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
}


def validate_monitor(doc: dict) -> None:
    """PodMonitor/ServiceMonitor against the hand-written subset schema."""
    schema = MONITOR_SCHEMAS.get(str(doc.get("kind")))
    if schema is None:
        raise SchemaError([f"no schema for monitoring.coreos.com kind {doc.get('kind')!r}"])
    v = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in v.iter_errors(doc)
    ]
    if not errors:
        errors += [f"metadata{e}" for e in model_errors(doc["metadata"], "V1ObjectMeta", "")]
        errors += [
            f"spec.selector{e}"
            for e in model_errors(doc["spec"]["selector"], "V1LabelSelector", "")
        ]
    if errors:
        raise SchemaError(errors)


# --------------------------------------------------------------------------


def validate_document(doc: dict) -> str:
    """Validate one document; returns which validator was used."""
    if not isinstance(doc, dict):
        raise SchemaError([f"not a mapping: {type(doc).__name__}"])
    api_version = str(doc.get("apiVersion", ""))
    if api_version.startswith("kubernetes.dask.org/"):
        validate_crd_object(doc)
        return "crd"
    if api_version.startswith("monitoring.coreos.com/"):
        validate_monitor(doc)
        return "monitor-subset"
    validate_core_object(doc)
    return "core-model"
