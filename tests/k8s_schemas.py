"""JSON Schemas, written for this project, of the Kubernetes objects deploy/k8s uses: KubeRay's
ray.io/v1 RayCluster and RayJob (field names and types from the KubeRay v1 API reference, KubeRay
1.4) and the core/v1 parts they embed (PersistentVolumeClaim, PodTemplateSpec, Container, Volume;
Kubernetes 1.32). They cover the fields our manifests use, and they are closed (no unknown
field passes), so a misspelt or misplaced field fails the test instead of being ignored by the
API server's pruning."""

from __future__ import annotations

QUANTITY = {"type": "string", "pattern": r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkKMGTPE]i?|Ki|Mi|Gi|Ti|Pi|Ei)?$"}
NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def closed(required: list[str], **props) -> dict:
    return {"type": "object", "required": required, "properties": props, "additionalProperties": False}


METADATA = closed(["name"], name=NAME, namespace=NAME, labels=STR_MAP, annotations=STR_MAP)
RESOURCES = closed([], requests={"type": "object", "additionalProperties": QUANTITY},
                   limits={"type": "object", "additionalProperties": QUANTITY})
CONTAINER = closed(
    ["name", "image"], name=NAME, image={"type": "string", "minLength": 1},
    command={"type": "array", "items": {"type": "string"}}, args={"type": "array", "items": {"type": "string"}},
    env={"type": "array", "items": closed(["name"], name={"type": "string"}, value={"type": "string"})},
    ports={"type": "array", "items": closed(["containerPort"], containerPort={"type": "integer", "minimum": 1, "maximum": 65535},
                                            name={"type": "string", "maxLength": 15},
                                            protocol={"enum": ["TCP", "UDP", "SCTP"]})},
    resources=RESOURCES, imagePullPolicy={"enum": ["Always", "IfNotPresent", "Never"]},
    volumeMounts={"type": "array", "items": closed(["name", "mountPath"], name=NAME, mountPath={"type": "string", "pattern": "^/"},
                                                   readOnly={"type": "boolean"})})
VOLUME = {**closed(["name"], name=NAME,
                   emptyDir=closed([], medium={"enum": ["", "Memory"]}, sizeLimit=QUANTITY),
                   persistentVolumeClaim=closed(["claimName"], claimName=NAME, readOnly={"type": "boolean"})),
          "oneOf": [{"required": ["emptyDir"]}, {"required": ["persistentVolumeClaim"]}]}
TOLERATION = closed([], key={"type": "string"}, operator={"enum": ["Exists", "Equal"]}, value={"type": "string"},
                    effect={"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]})
POD_TEMPLATE = closed(["spec"], metadata=closed([], labels=STR_MAP, annotations=STR_MAP), spec=closed(
    ["containers"], containers={"type": "array", "minItems": 1, "items": CONTAINER},
    volumes={"type": "array", "items": VOLUME}, tolerations={"type": "array", "items": TOLERATION},
    nodeSelector=STR_MAP, serviceAccountName=NAME, restartPolicy={"enum": ["Always", "OnFailure", "Never"]}))

# KubeRay ray.io/v1
HEAD_GROUP = closed(["template"], rayStartParams=STR_MAP, template=POD_TEMPLATE,
                    serviceType={"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, enableIngress={"type": "boolean"})
WORKER_GROUP = closed(["groupName", "template"], groupName=NAME, replicas={"type": "integer", "minimum": 0},
                      minReplicas={"type": "integer", "minimum": 0}, maxReplicas={"type": "integer", "minimum": 0},
                      numOfHosts={"type": "integer", "minimum": 1}, rayStartParams=STR_MAP, template=POD_TEMPLATE,
                      suspend={"type": "boolean"}, idleTimeoutSeconds={"type": "integer", "minimum": 0})
RAY_CLUSTER_SPEC = closed(["headGroupSpec"], rayVersion={"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
                          headGroupSpec=HEAD_GROUP, workerGroupSpecs={"type": "array", "items": WORKER_GROUP},
                          enableInTreeAutoscaling={"type": "boolean"}, suspend={"type": "boolean"})


def kind(api: str, name: str, spec: dict) -> dict:
    return closed(["apiVersion", "kind", "metadata", "spec"], apiVersion={"const": api}, kind={"const": name},
                  metadata=METADATA, spec=spec)


SCHEMAS = {
    "RayCluster": kind("ray.io/v1", "RayCluster", RAY_CLUSTER_SPEC),
    "RayJob": kind("ray.io/v1", "RayJob", closed(
        ["entrypoint"], entrypoint={"type": "string", "minLength": 1}, runtimeEnvYAML={"type": "string"},
        submissionMode={"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
        shutdownAfterJobFinishes={"type": "boolean"}, ttlSecondsAfterFinished={"type": "integer", "minimum": 0},
        activeDeadlineSeconds={"type": "integer", "minimum": 1}, backoffLimit={"type": "integer", "minimum": 0},
        rayClusterSpec=RAY_CLUSTER_SPEC, clusterSelector=STR_MAP, suspend={"type": "boolean"}, jobId={"type": "string"},
        entrypointNumCpus={"type": "number", "minimum": 0}, entrypointNumGpus={"type": "number", "minimum": 0},
        submitterPodTemplate=POD_TEMPLATE)),
    "PersistentVolumeClaim": kind("v1", "PersistentVolumeClaim", closed(
        ["accessModes", "resources"],
        accessModes={"type": "array", "minItems": 1,
                     "items": {"enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]}},
        resources=closed(["requests"], requests=closed(["storage"], storage=QUANTITY)),
        storageClassName={"type": "string"}, volumeMode={"enum": ["Filesystem", "Block"]})),
}
