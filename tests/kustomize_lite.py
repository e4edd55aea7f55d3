"""A small renderer of the kustomize features deploy/k8s uses (resources, images, JSON6902
patches, replacements), so the tests check the rendered overlays without a kustomize binary.
Where `kubectl` is installed, tests/unit/test_k8s.py checks it renders the same objects."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml


def build(path: Path) -> list[dict]:
    kz = yaml.safe_load((path / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for res in kz.get("resources", []):
        p = path / res
        objects += build(p) if p.is_dir() else [d for d in yaml.safe_load_all(p.read_text()) if d]
    for patch in kz.get("patches", []):
        for obj in select(objects, patch["target"]):
            for op in yaml.safe_load(patch["patch"]):
                apply_op(obj, op)
    for image in kz.get("images", []):
        set_images(objects, image)
    for rep in kz.get("replacements", []):
        (src,) = select(objects, rep["source"])
        value = get(src, rep["source"]["fieldPath"].split("."))
        for target in rep["targets"]:
            for obj in select(objects, target["select"]):
                for field in target["fieldPaths"]:
                    put(obj, field.split("."), copy.deepcopy(value))
    return objects


def select(objects: list[dict], sel: dict) -> list[dict]:
    found = [o for o in objects if o["kind"] == sel["kind"] and o["metadata"]["name"] == sel["name"]]
    assert found, f"no {sel['kind']}/{sel['name']} to patch"
    return found


def get(obj, keys: list[str]):
    for k in keys:
        obj = obj[k]
    return obj


def put(obj, keys: list[str], value) -> None:
    get(obj, keys[:-1])[keys[-1]] = value


def apply_op(obj: dict, op: dict) -> None:
    """One JSON6902 add / replace / remove (RFC 6901 pointers)."""
    keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].lstrip("/").split("/")]
    parent = obj
    for k in keys[:-1]:
        parent = parent[int(k)] if isinstance(parent, list) else parent[k]
    last = keys[-1]
    if isinstance(parent, list):
        i = len(parent) if last == "-" else int(last)
        if op["op"] == "add":
            parent.insert(i, op["value"])
        elif op["op"] == "replace":
            parent[i] = op["value"]
        else:
            parent.pop(i)
    elif op["op"] in ("add", "replace"):
        assert op["op"] == "add" or last in parent, f"replace of a missing {op['path']}"
        parent[last] = op["value"]
    else:
        del parent[last]


def set_images(node, image: dict) -> None:
    """kustomize `images`: every container image named image['name'] gets the new name and tag."""
    if isinstance(node, list):
        for x in node:
            set_images(x, image)
    elif isinstance(node, dict):
        if isinstance(node.get("image"), str) and node["image"].split(":")[0] == image["name"]:
            node["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
        for v in node.values():
            set_images(v, image)
