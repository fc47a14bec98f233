"""Where an alarm goes besides the log, the metric and the API's events: a Kubernetes Event on our own pod when we
run in a cluster (``kubectl get events -n <ns>`` and ``kubectl describe pod`` are where an operator looks)."""

from __future__ import annotations

import kubernetes.client

from homelab_autoinstall.service import AlarmSink
from homelab_autoinstall.settings import Settings
from homelab_common.k8s.client import load_client
from homelab_common.k8s.events import EventRecorder, ObjectRef
from homelab_common.site import Machine

REASON = "SeedFetchedTwice"


def kube_event_sink(api_client: kubernetes.client.ApiClient, namespace: str, pod: str) -> AlarmSink:
    recorder = EventRecorder(api_client, component="homelab-autoinstall", namespace=namespace, instance=pod)
    regarding = ObjectRef("Pod", pod, namespace)

    def send(machine: Machine, message: str) -> None:
        recorder.warning(regarding, REASON, message, action="BurnInstallWindow")

    return send


def alarm_sinks(settings: Settings, api_client: kubernetes.client.ApiClient | None = None) -> list[AlarmSink]:
    """The Kubernetes Event sink when the settings name our namespace and pod (the chart sets both), else none."""
    if not settings.events_namespace or not settings.pod_name:
        return []
    return [kube_event_sink(api_client or load_client(), settings.events_namespace, settings.pod_name)]
