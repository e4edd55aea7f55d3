"""deploy/k8s: every manifest parses, each overlay renders to a PVC, a RayCluster and a RayJob
that validate against our schemas (tests/k8s_schemas.py), and the RayJob's entrypoint is a
command our CLI accepts (its Hydra overrides compose against conf/ and validate)."""

import copy
import importlib.metadata
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from rlsys.config import register_configs, to_dataclass
from rlsys.config.renamed_keys import check_overrides
from rlsys.config.validation import validate
from rlsys.train import CONF_DIR
from tests.k8s_schemas import SCHEMAS
from tests.kustomize_lite import build

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["cpu", "gpu"]
register_configs()


def render(overlay: str) -> dict[str, dict]:
    return {o["kind"]: o for o in build(K8S / "overlays" / overlay)}


def schema_errors(obj: dict) -> list[str]:
    v = jsonschema.Draft202012Validator(SCHEMAS[obj["kind"]])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(obj)]


def pod_templates(cluster_spec: dict) -> list[dict]:
    return [cluster_spec["headGroupSpec"]["template"]] + [g["template"] for g in cluster_spec["workerGroupSpecs"]]


def test_every_manifest_parses():
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 6
    for f in files:
        assert all(isinstance(d, dict) for d in yaml.safe_load_all(f.read_text())), f


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_objects_that_match_the_schemas(overlay):
    objs = render(overlay)
    assert sorted(objs) == ["PersistentVolumeClaim", "RayCluster", "RayJob"]
    for obj in objs.values():
        assert schema_errors(obj) == [], obj["kind"]
    job, cluster = objs["RayJob"]["spec"], objs["RayCluster"]["spec"]
    assert job["rayClusterSpec"] == cluster  # one definition: the job's cluster is the RayCluster's spec
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] > 0
    assert job["submissionMode"] == "K8sJobMode"
    for tpl in pod_templates(cluster):
        vols = {v["name"]: v for v in tpl["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in tpl["spec"]["containers"][0]["volumeMounts"]}
        assert vols[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert vols[mounts["/data"]]["persistentVolumeClaim"]["claimName"] == objs["PersistentVolumeClaim"]["metadata"]["name"]
        assert tpl["spec"]["containers"][0]["image"] == f"rlsys:{overlay}"


def test_gpu_overlay_asks_for_gpus_and_cpu_overlay_does_not():
    def gpus(objs):
        return [tpl["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu")
                for tpl in pod_templates(objs["RayCluster"]["spec"])]
    assert gpus(render("cpu")) == [None, None]
    assert gpus(render("gpu")) == [None, "1"]
    assert render("gpu")["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_schemas_catch_misspelt_and_mistyped_fields():
    objs = render("cpu")
    bad = copy.deepcopy(objs["RayJob"])
    bad["spec"]["submissionmode"] = bad["spec"].pop("submissionMode")
    assert any("submissionmode" in e for e in schema_errors(bad))
    bad = copy.deepcopy(objs["RayCluster"])
    bad["spec"]["headGroupSpec"]["template"]["spec"]["volumes"][0]["emptyDir"]["medium"] = "memory"
    assert schema_errors(bad)
    bad = copy.deepcopy(objs["RayJob"])
    bad["spec"]["ttlSecondsAfterFinished"] = "600"
    assert any("ttlSecondsAfterFinished" in e for e in schema_errors(bad))
    bad = copy.deepcopy(objs["PersistentVolumeClaim"])
    bad["spec"]["resources"]["requests"]["storage"] = "20 GB"
    assert schema_errors(bad)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_entrypoint_is_a_command_the_cli_accepts(overlay):
    job = render(overlay)["RayJob"]["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:3] == ["python", "-m", "rlsys.train"]
    check_overrides(argv[3:])  # no renamed key (rlsys.train refuses them before composing)
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        dcfg = compose(config_name="config", overrides=argv[3:])
    dcfg = OmegaConf.to_container(dcfg, resolve=False)
    dcfg["run_dir"] = "/data/runs/x"
    cfg = validate(to_dataclass(OmegaConf.create(dcfg)))
    assert cfg.trainer.output_dir == "/data/runs" and cfg.model.cache_dir == "/data/cache"
    assert cfg.logger.backends == ["console", "jsonl", "tensorboard"]
    env = yaml.safe_load(job["runtimeEnvYAML"])
    ray_env = pytest.importorskip("ray.runtime_env")
    assert ray_env.RuntimeEnv(**env)["env_vars"]["HF_HOME"].startswith("/data/")


def test_ray_version_is_the_projects_everywhere():
    from packaging.specifiers import SpecifierSet

    installed = importlib.metadata.version("ray")
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    pinned = re.search(r"ARG RAY_VERSION=(\S+)", dockerfile).group(1)
    deps = re.search(r'"ray\[default\]([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    for overlay in OVERLAYS:
        assert render(overlay)["RayCluster"]["spec"]["rayVersion"] == pinned == installed
    assert installed in SpecifierSet(deps)
    assert "bash scripts/setup.sh" in dockerfile  # one source of truth for dependencies


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubectl_kustomize_renders_the_same_objects(overlay):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert {o["kind"]: o for o in yaml.safe_load_all(out)} == render(overlay)
