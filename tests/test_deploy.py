"""The container image and the Kubernetes manifests, checked as far as this machine can.

There is no container engine or cluster here, so: the manifests validate against the Kubernetes
schemas (offline), the Dockerfile passes hadolint, the image's command line and environment start
a real server here (on loopback, in a temporary folder), and probes, ports and paths agree with it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "deploy" / "kubernetes"
FIRST_LINE = re.compile(r"^mockllm-tui serving on http://127\.0\.0\.1:(\d+) \(responses: (.+)\)$")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """The final stage's instructions as (keyword, argument), continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        keyword, _, argument = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append((keyword.upper(), argument.strip()))
    return stages[-1]


def image_config() -> dict[str, Any]:
    """What `docker inspect` would say of the image: env, entrypoint, cmd, ports, healthcheck, user."""
    config: dict[str, Any] = {"env": {}, "expose": []}
    for keyword, argument in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(argument):
                name, _, value = pair.partition("=")
                config["env"][name] = value
        elif keyword in ("ENTRYPOINT", "CMD", "STOPSIGNAL", "USER"):
            config[keyword.lower()] = json.loads(argument) if argument.startswith("[") else argument
        elif keyword == "EXPOSE":
            config["expose"] += [int(port) for port in argument.split()]
        elif keyword == "HEALTHCHECK":
            config["healthcheck"] = json.loads(argument[argument.index("CMD") + 3 :].strip())
    return config


def manifests(*, redis: bool = False) -> dict[str, dict[str, Any]]:
    """The mock's Kubernetes resources in deploy/kubernetes by kind (or, with `redis`, the shared
    state's Redis: redis.yaml)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        if path.name == "kustomization.yaml" or (path.name == "redis.yaml") != redis:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


def free_host_args(args: list[str]) -> list[str]:
    """The same arguments, listening on loopback and a free port (tests reach 127.0.0.1 only)."""
    out = list(args)
    for flag, value in (("--host", "127.0.0.1"), ("--port", "0")):
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


def start(args: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mockllm_tui", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().rstrip("\n")
    match = FIRST_LINE.match(line)
    if not match:
        proc.kill()
        pytest.fail(f"unexpected first line {line!r}; stderr: {proc.communicate()[1]}")
    return proc, int(match.group(1)), match.group(2)


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKLLM_")}
    env.update(extra)
    return env


@pytest.mark.parametrize("path", sorted(p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_every_manifest_validates_against_the_kubernetes_schemas(path: str) -> None:
    for doc in yaml.safe_load_all((KUBE / path).read_text()):
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_the_kustomization_lists_every_manifest_and_only_those() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    on_disk = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    assert [image["name"] for image in kustomization["images"]] == [
        manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0]
    ]


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sysconfig.get_path("scripts")) / "hadolint")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_is_multi_stage_non_root_and_copies_only_what_it_serves() -> None:
    config = image_config()
    stages = (ROOT / "Dockerfile").read_text().count("\nFROM ") + 1
    assert stages >= 2
    assert config["user"] not in ("", "0", "root")
    assert config["stopsignal"] == "SIGTERM"
    assert config["entrypoint"] == ["mockllm-tui"]
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def test_the_image_command_serves_here_passes_its_healthcheck_and_stops_cleanly(tmp_path: Path) -> None:
    config = image_config()
    env = dict(config["env"])
    assert env["MOCKLLM_HOST"] == "0.0.0.0" and int(env["MOCKLLM_PORT"]) in config["expose"]
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "responses.yml", tmp_path / "config" / "responses.yml")
    env["MOCKLLM_RESPONSES"] = str(tmp_path / "config" / "responses.yml")
    env.pop("PATH")
    env["MOCKLLM_HOST"], env["MOCKLLM_PORT"] = "127.0.0.1", "0"
    args = config["entrypoint"][1:] + free_host_args(config["cmd"])
    proc, port, responses = start(args, clean_env(env), tmp_path)
    try:
        assert responses == env["MOCKLLM_RESPONSES"]
        probe = [sys.executable if part == "python" else part for part in config["healthcheck"]]
        probe = [part.replace(":8000/", f":{port}/") for part in probe]
        assert subprocess.run(probe, timeout=30).returncode == 0
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    finally:
        assert stop(proc) == 0


def test_the_deployment_runs_here_and_its_probes_ports_and_service_agree(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    found = manifests()
    pod = found["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert set(ports.values()) <= set(image_config()["expose"])
    service = found["Service"]["spec"]
    assert service["selector"] == found["Deployment"]["spec"]["selector"]["matchLabels"]
    assert all(p["targetPort"] in ports for p in service["ports"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_map = found["ConfigMap"]
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for name, text in config_map["data"].items():
        (config_dir / name).write_text(text)
    config_name = config_map["metadata"]["name"]
    config_volume = next(n for n, v in volumes.items() if v.get("configMap", {}).get("name") == config_name)
    args = [arg.replace(mounts[config_volume], str(config_dir)) for arg in container["args"]]
    given = {e["name"]: e for e in container.get("env", [])}
    assert given["MOCKLLM_INSTANCE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    state = urlsplit(given["MOCKLLM_STATE"]["value"])
    redis = manifests(redis=True)
    assert state.scheme == "redis" and state.hostname == redis["Service"]["metadata"]["name"]
    assert state.port in [p["port"] for p in redis["Service"]["spec"]["ports"]]
    # The same command line and environment, with the cluster's Redis replaced by the test's.
    env = clean_env({name: e["value"] for name, e in given.items() if "value" in e})
    env["MOCKLLM_STATE"] = redis_server.url
    env["MOCKLLM_INSTANCE_NAME"] = "mockllm-7d9c-abcde"
    check = subprocess.run(
        [sys.executable, "-m", "mockllm_tui", "--check", str(config_dir / "responses.yml")],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    proc, port, _ = start(free_host_args(args), env, tmp_path)
    try:
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            assert probe["httpGet"]["port"] in ports
            assert httpx.get(f"http://127.0.0.1:{port}{probe['httpGet']['path']}").status_code == 200
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]},
        )
        assert answer.json()["choices"][0]["message"]["content"] == "Hello from mockllm-tui in Kubernetes."
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["state"] == "redis"
    finally:
        assert stop(proc) == 0


def test_compose_publishes_the_image_port_and_mounts_the_rules_where_the_image_reads_them() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["mockllm"]
    env = image_config()["env"]
    assert any(port.endswith(f":{env['MOCKLLM_PORT']}") for port in service["ports"])
    assert any(volume.split(":")[1] == env["MOCKLLM_RESPONSES"] for volume in service["volumes"])
    state = urlsplit(service["environment"]["MOCKLLM_STATE"])
    assert state.hostname in compose["services"] and state.hostname in service["depends_on"]
    redis = compose["services"][state.hostname]
    assert any(port.endswith(f":{state.port}") for port in redis["ports"])


def test_the_redis_runs_non_root_with_probes_and_its_service_selects_it() -> None:
    redis = manifests(redis=True)
    pod = redis["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data"}
    assert container["readinessProbe"] and container["livenessProbe"]
    assert redis["Service"]["spec"]["selector"] == redis["Deployment"]["spec"]["selector"]["matchLabels"]
    assert redis["Service"]["spec"]["selector"] != manifests()["Service"]["spec"]["selector"]
