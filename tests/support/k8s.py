"""A small kustomize for the tests: builds the infra/k8s kustomizations offline, without the kustomize binary.

It implements exactly the features those files use, as kustomize v5 does, and refuses any other, so a
kustomization cannot use something this builder would silently ignore:

- `resources`: YAML files (one or more documents) and folders holding a kustomization.yaml;
- `namespace`: set on every namespaced object built so far;
- `configMapGenerator`: `literals` and `files` (`key=path` or `path`), `options.labels`, `behavior: merge`;
  the name gets kustomize's content-hash suffix, and references from pod specs follow the new name;
- `images`: `name` with `newName` and/or `newTag`, on the containers of pod templates;
- `patches`: JSON patches (RFC 6902) from a file, aimed by `target` kind, name (a regular expression) and
  label selector (`key=value` terms). A patch that matches nothing is an error here (kustomize ignores it).

tests/unit/infra/test_k8s.py compares the result with `kubectl kustomize` where kubectl is installed.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import jsonpatch
import yaml

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "namespace", "configMapGenerator", "images", "patches"}
GENERATOR_KEYS = {"name", "literals", "files", "options", "behavior"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "StorageClass",
                  "PriorityClass", "IngressClass", "PersistentVolume"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_GENERATED = "__generated__"  # marks a generated ConfigMap until its name gets the hash suffix


class KustomizeError(ValueError):
    """A kustomization this builder cannot build (or kustomize would refuse)."""


def build(path: Path) -> list[dict]:
    """The objects `kubectl kustomize path` prints, in the order the files list them."""
    objects = _build(Path(path))
    renames = {}
    for obj in objects:
        if obj.pop(_GENERATED, False):
            old = obj["metadata"]["name"]
            obj["metadata"]["name"] = f"{old}-{config_map_hash(obj)}"
            renames[old] = obj["metadata"]["name"]
    for obj in objects:
        for spec in pod_specs(obj):
            _rename_config_map_references(spec, renames)
    return objects


def _build(root: Path) -> list[dict]:
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_KEYS
    if unknown:
        raise KustomizeError(f"{root}: kustomization fields this builder does not implement: {sorted(unknown)}")
    objects: list[dict] = []
    for entry in kustomization.get("resources", []):
        target = root / entry
        if target.is_dir():
            objects += _build(target)
        else:
            objects += [doc for doc in yaml.safe_load_all(target.read_text()) if doc]
    for generator in kustomization.get("configMapGenerator", []):
        _generate(root, generator, objects)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(image, objects)
    for patch in kustomization.get("patches", []):
        _patch(root, patch, objects)
    return objects


# -- configMapGenerator ------------------------------------------------------------------------------------

def _generate(root: Path, generator: dict, objects: list[dict]) -> None:
    unknown = set(generator) - GENERATOR_KEYS
    if unknown or set(generator.get("options", {})) - {"labels"}:
        raise KustomizeError(f"{root}: configMapGenerator fields not implemented: {generator}")
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        key, sep, value = literal.partition("=")
        if not sep or value[:1] in ("'", '"'):
            raise KustomizeError(f"{root}: literal {literal!r} (quoted values are not implemented)")
        data[key] = value
    for source in generator.get("files", []):
        key, sep, file = source.partition("=")
        file = file if sep else key
        data[key if sep else Path(file).name] = (root / file).read_text()
    labels = generator.get("options", {}).get("labels", {})
    behavior = generator.get("behavior", "create")
    if behavior == "merge":
        matches = [o for o in objects if o["kind"] == "ConfigMap" and o.get(_GENERATED)
                   and o["metadata"]["name"] == generator["name"]]
        if len(matches) != 1:
            raise KustomizeError(f"{root}: merge into {generator['name']!r}, which the bases do not generate")
        existing = matches[0]
        existing["data"] = {**existing.get("data", {}), **data}
        if labels:
            existing["metadata"]["labels"] = {**existing["metadata"].get("labels", {}), **labels}
        return
    if behavior != "create":
        raise KustomizeError(f"{root}: configMapGenerator behavior {behavior!r} is not implemented")
    metadata = {"name": generator["name"]}
    if labels:
        metadata["labels"] = dict(labels)
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data, _GENERATED: True})


def config_map_hash(config_map: dict) -> str:
    """kustomize's name suffix: sha256 of the Go JSON encoding of kind, name and data, 10 characters re-mapped.

    The name is encoded empty: kustomize v5's hasher looks it up as `yaml.Lookup("metadata/name")`, one field
    named "metadata/name", which no ConfigMap has (checked against kubectl 1.32's kustomize v5.5).
    """
    encoded = json.dumps({"data": config_map.get("data", {}), "kind": "ConfigMap", "name": ""},
                         sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if "\\b" in encoded or "\\f" in encoded:
        raise KustomizeError("\\b and \\f are encoded differently by Go; not implemented")
    # Go's encoding/json escapes these for HTML safety; Python's does not.
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        encoded = encoded.replace(char, escape)
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def pod_specs(obj: dict) -> list[dict]:
    """The pod specs inside a workload object (none for other kinds)."""
    if obj["kind"] in POD_TEMPLATE_KINDS:
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    if obj["kind"] == "Pod":
        return [obj["spec"]]
    return []


def containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _rename_config_map_references(spec: dict, renames: dict[str, str]) -> None:
    def rename(ref: dict | None) -> None:
        if ref and ref.get("name") in renames:
            ref["name"] = renames[ref["name"]]

    for volume in spec.get("volumes", []):
        rename(volume.get("configMap"))
        for source in volume.get("projected", {}).get("sources", []):
            rename(source.get("configMap"))
    for container in containers(spec):
        for source in container.get("envFrom", []):
            rename(source.get("configMapRef"))
        for var in container.get("env", []):
            rename(var.get("valueFrom", {}).get("configMapKeyRef"))


# -- images --------------------------------------------------------------------------------------------------

def split_image(image: str) -> tuple[str, str | None]:
    """(name, tag) of an image reference; a registry port is not a tag."""
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, None


def _set_image(image: dict, objects: list[dict]) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise KustomizeError(f"images fields not implemented: {image}")
    for obj in objects:
        for spec in pod_specs(obj):
            for container in containers(spec):
                name, tag = split_image(container["image"])
                if name == image["name"]:
                    name = image.get("newName", name)
                    tag = str(image["newTag"]) if "newTag" in image else tag
                    container["image"] = f"{name}:{tag}" if tag else name


# -- patches ---------------------------------------------------------------------------------------------------

def _selected(obj: dict, target: dict) -> bool:
    if set(target) - {"kind", "name", "labelSelector"}:
        raise KustomizeError(f"patch target fields not implemented: {target}")
    if "kind" in target and obj["kind"] != target["kind"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], obj["metadata"]["name"]):
        return False
    labels = obj["metadata"].get("labels", {})
    for term in filter(None, (t.strip() for t in target.get("labelSelector", "").split(","))):
        key, sep, value = term.partition("=")
        if not sep or value.startswith("=") or key.endswith("!"):
            raise KustomizeError(f"label selector term {term!r}: only key=value is implemented")
        if labels.get(key) != value:
            return False
    return True


def _patch(root: Path, patch: dict, objects: list[dict]) -> None:
    if set(patch) - {"path", "target"} or "path" not in patch or "target" not in patch:
        raise KustomizeError(f"{root}: only `path` + `target` patches are implemented: {patch}")
    operations = yaml.safe_load((root / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise KustomizeError(f"{root / patch['path']}: not a JSON patch (strategic merge is not implemented)")
    matched = [i for i, obj in enumerate(objects) if _selected(obj, patch["target"])]
    if not matched:
        raise KustomizeError(f"{root}: patch {patch['path']} matches no object ({patch['target']})")
    for i in matched:
        objects[i] = jsonpatch.apply_patch(objects[i], copy.deepcopy(operations))
