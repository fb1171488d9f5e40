"""``speedrun images build|lock|verify|push|list``: the environment images and their lock file."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from orchestrator.cli import views
from orchestrator.cli.common import JsonFlag, command, group, load_catalog, load_settings, progress
from orchestrator.errors import BackendError, UsageError
from orchestrator.images import build as builder
from orchestrator.images.catalog import Lock, LockEntry, load_targets, pick, read_lock, write_lock

app = group("Environment images: build, lock digests, verify, push.")

Names = Annotated[list[str] | None, typer.Argument(help="Image names (default: all buildable here).")]


class DigestMismatch(UsageError):
    code = "digest_mismatch"


def _records_by_image() -> dict[str, list[str]]:
    by_image: dict[str, list[str]] = {}
    for record in load_catalog(load_settings()).records.values():
        by_image.setdefault(record.manifest.environment.image, []).append(record.id)
    return by_image


def _local(names: list[str] | None) -> list[str]:
    """The named images, or by default those whose builder needs no registry."""
    settings = load_settings()
    targets = load_targets(settings.images_dir)
    return names or [t.name for t in targets.values() if t.builder == "host-env"]


@app.command("list")
@command
async def images_list(as_json: JsonFlag = False) -> None:
    """Image targets, their local digest and the locked one."""
    settings = load_settings()
    lock = read_lock(settings.images_dir)
    rows = []
    for target in load_targets(settings.images_dir).values():
        local = await asyncio.to_thread(builder.image_id, f"{target.name}:{settings.docker.image_tag}")
        locked = lock.images.get(target.name)
        rows.append(
            {
                "image": target.name,
                "builder": target.builder,
                "local": local,
                "locked": locked.digest if locked else None,
            }
        )
    if as_json:
        views.print_json(rows)
        return
    for row in rows:
        line = (
            f"{row['image']:<24} {row['builder']:<10} local {row['local'] or '-'}  "
            f"locked {row['locked'] or '-'}"
        )
        views.stdout.print(line, markup=False)


@app.command("build")
@command
async def images_build(names: Names = None, as_json: JsonFlag = False) -> None:
    """Build images (default: the tiny-track CPU image, which needs no registry)."""
    settings = load_settings()
    targets = pick(load_targets(settings.images_dir), _local(names))
    staging = settings.home / "cache" / "images"
    staging.mkdir(parents=True, exist_ok=True)
    repo = settings.images_dir.parent
    built = {}
    for target in targets:
        progress(f"building {target.name}:{settings.docker.image_tag}")
        built[target.name] = await asyncio.to_thread(
            builder.build, target, repo, staging, settings.docker.image_tag, progress
        )
        progress(f"built {target.name}: {built[target.name]}")
    if as_json:
        views.print_json(built)
    else:
        for name, digest in built.items():
            views.stdout.print(f"{name} {digest}", markup=False)


@app.command("lock")
@command
async def images_lock(names: Names = None, as_json: JsonFlag = False) -> None:
    """Write the local images' digests (and the records using them) to images/lock.json."""
    settings = load_settings()
    targets = pick(load_targets(settings.images_dir), _local(names))
    lock = read_lock(settings.images_dir)
    records = _records_by_image()
    for target in targets:
        ref = f"{target.name}:{settings.docker.image_tag}"
        digest = await asyncio.to_thread(builder.image_id, ref)
        if digest is None:
            raise UsageError(f"image {ref} is not built; run `speedrun images build {target.name}`")
        lock.images[target.name] = LockEntry(digest=digest, records=sorted(records.get(target.name, [])))
    path = write_lock(settings.images_dir, lock)
    if as_json:
        views.print_json(lock.model_dump(mode="json"))
    else:
        for target in targets:
            views.stdout.print(f"{target.name} {lock.images[target.name].digest}", markup=False)
        views.stdout.print(f"wrote {path}", markup=False)


@app.command("verify")
@command
async def images_verify(names: Names = None, as_json: JsonFlag = False) -> None:
    """Check that each local image has exactly the digest in the lock file (exit 2 if not)."""
    settings = load_settings()
    lock = read_lock(settings.images_dir)
    wanted = names or sorted(lock.images)
    if not wanted:
        raise UsageError(f"{settings.images_dir / 'lock.json'} locks no image; run `speedrun images lock`")
    results, problems = [], []
    for name in wanted:
        entry = lock.images.get(name)
        if entry is None:
            raise UsageError(f"image {name} is not in the lock file")
        ref = f"{name}:{settings.docker.image_tag}"
        local = await asyncio.to_thread(builder.image_id, ref)
        ok = local == entry.digest
        results.append({"image": name, "locked": entry.digest, "local": local, "ok": ok})
        if local is None:
            problems.append(f"{ref} is not on this engine (locked {entry.digest})")
        elif not ok:
            problems.append(f"{ref} has digest {local}, the lock says {entry.digest}")
    if as_json:
        views.print_json(results)
    else:
        for row in results:
            views.stdout.print(f"{row['image']}: {'ok' if row['ok'] else 'MISMATCH'}", markup=False)
    if problems:
        raise DigestMismatch("images differ from images/lock.json: " + "; ".join(problems))


@app.command("push")
@command
async def images_push(
    registry: Annotated[str, typer.Option(help="Registry prefix, e.g. ghcr.io/org.")],
    names: Names = None,
) -> None:
    """Push locked images to a registry and record their registry digests in the lock."""
    settings = load_settings()
    lock: Lock = read_lock(settings.images_dir)
    for name in names or sorted(lock.images):
        entry = lock.images.get(name)
        if entry is None:
            raise UsageError(f"image {name} is not in the lock file; lock it first")
        local = await asyncio.to_thread(builder.image_id, f"{name}:{settings.docker.image_tag}")
        if local != entry.digest:
            raise DigestMismatch(f"{name}: local digest {local} differs from the lock ({entry.digest})")
        remote = f"{registry.rstrip('/')}/{name}:{entry.digest.removeprefix('sha256:')[:12]}"
        await asyncio.to_thread(builder.docker, "tag", entry.digest, remote)
        await asyncio.to_thread(builder.docker, "push", remote, progress=progress)
        out = await asyncio.to_thread(
            builder.docker, "image", "inspect", "--format", "{{json .RepoDigests}}", remote, capture=True
        )
        digests = [d for d in out.strip().strip("[]").replace('"', "").split(",") if d.startswith(registry)]
        if not digests:
            raise BackendError(f"pushed {remote} but the engine reports no registry digest")
        entry.repo_digest = digests[0]
        progress(f"pushed {remote} as {entry.repo_digest}")
    write_lock(settings.images_dir, lock)
