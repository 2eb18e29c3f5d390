"""Verbs for container images: base images and builder images."""

from __future__ import annotations

from relocpy.cli import group, verb


def register(commands) -> None:
    image = group(commands, "image", "container images: Debian base images and the targets' builder images")
    parser = verb(image, "bootstrap", image_bootstrap,
                  "make a minimal Debian base image with debootstrap and `docker import` (needs root)")
    parser.add_argument("--suite", required=True, metavar="SUITE", help="Debian suite to debootstrap, e.g. bookworm")
    parser.add_argument("--tag", metavar="TAG", help="image tag to create (default: relocpy-SUITE)")
    parser.add_argument("--debian-mirror", metavar="URL", help="Debian mirror URL (default: debootstrap's own default)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the tag already exists")
    parser = verb(image, "build", image_build, "build the target's builder image now (builds also build it on first use)")
    parser.add_argument("--target", required=True, metavar="TRIPLE", help="target triple, e.g. x86_64-unknown-linux-gnu")


def _log(name: str):
    from relocpy.settings import user_cache_dir

    return user_cache_dir() / "logs" / f"{name}.log"


def image_bootstrap(args) -> None:
    from relocpy.images import BootstrapRequest, bootstrap_base, default_tag
    from relocpy.progress import info, step

    request = BootstrapRequest(suite=args.suite, tag=args.tag or default_tag(args.suite), mirror=args.debian_mirror,
                               force=args.force)
    log = _log(f"image-bootstrap-{args.suite}")
    with step(f"base image {request.tag}"):
        made = bootstrap_base(request, log)
    info(f"{request.tag}: {'created' if made else 'exists, kept (use --force to rebuild)'}  (log: {log})")


def image_build(args) -> None:
    from relocpy.progress import info, step
    from relocpy.recipes import get_target, load_recipes
    from relocpy.runners.docker import DockerRunner

    recipe = get_target(load_recipes(), args.target)
    log = _log(f"image-build-{args.target}")
    with step(f"builder image for {args.target}"):
        tag = DockerRunner(recipe).ensure_image(log)
    info(f"{args.target}: {tag}  (log: {log})")
