"""Verbs for keys, the signed index, the uv export and publishing."""

from __future__ import annotations

from pathlib import Path

from relocpy.cli import group, verb
from relocpy.cli.options import add_json, add_trust, print_json, repeatable

INDEX_HELP = "index.json path, its directory, or URL"


def register(commands) -> None:
    keys = group(commands, "keys", "Ed25519 signing keys")
    parser = verb(keys, "generate", keys_generate, "make an Ed25519 signing key; prints its public key line")
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write the new private key (mode 0600)")
    parser = verb(keys, "public", keys_public, "print a private key's public key: one line, ed25519:<base64>")
    parser.add_argument("keyfile", metavar="KEYFILE", help="private key file")

    index = group(commands, "index", "the signed index: build, verify, export for uv")
    parser = verb(index, "build", index_build, "write DIST/index.json and its detached signature DIST/index.json.sig")
    parser.add_argument("dist", metavar="DIST", help="directory holding the archives and their <archive>.json metadata")
    parser.add_argument("--base-url", required=True, metavar="URL", help="URL the artifacts will be served from")
    repeatable(parser, "--sign", "private key file to sign with (several rotate keys)", required=True, metavar="KEYFILE")
    parser.add_argument("--expires", default="30d", metavar="DURATION",
                        help="how long clients accept the index: e.g. 30d, 12h (default 30d)")
    parser.add_argument("--previous", metavar="LOCATION",
                        help="the published index the new serial continues: a URL or path of index.json, or "
                        "a publish location (directory or s3://BUCKET/PREFIX; nothing published there yet "
                        "means serial 1)")
    parser = verb(index, "verify", index_verify, "check the signature, expiry and serial of an index")
    parser.add_argument("index", metavar="INDEX", help=INDEX_HELP)
    add_trust(parser)
    add_json(parser, "the verified index")
    verb(index, "schema", index_schema, "print the JSON Schema of index.json")
    parser = verb(index, "export-uv", index_export_uv,
                  "write uv's download-metadata JSON for a verified index (uv --python-downloads-json-url)")
    parser.add_argument("index", metavar="INDEX", help=INDEX_HELP)
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write uv's JSON")
    add_trust(parser)

    parser = verb(commands, "publish", publish, "upload artifacts and metadata, then the index and its signature")
    parser.add_argument("dist", metavar="DIST", help="directory holding archives, metadata and the signed index")
    parser.add_argument("--to", required=True, metavar="DIR_OR_S3_URL", help="a directory, or s3://BUCKET/PREFIX")
    parser.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint for R2, MinIO and other S3-speaking stores")
    parser.add_argument("--dry-run", action="store_true", help="show what would be uploaded; write nothing")
    repeatable(parser, "--sign", "key file: if the published index has entries ours lacks (an earlier release), "
               "merge them and re-sign", metavar="KEYFILE")


def keys_generate(args) -> None:
    from relocpy import keys

    print(keys.generate(Path(args.out)))


def keys_public(args) -> None:
    from relocpy import keys

    print(keys.public_line(keys.load_private(Path(args.keyfile)).public_key()))


def index_build(args) -> None:
    from relocpy import keys
    from relocpy.index_build import build_index, parse_duration, write_signed

    for key_file in args.sign:  # a bad key fails before the archives are hashed
        keys.load_private(Path(key_file))
    dist = Path(args.dist)
    index = build_index(dist, args.base_url, parse_duration(args.expires), args.previous)
    write_signed(dist, index, [Path(k) for k in args.sign])
    print(f"index serial {index.serial}: {len(index.artifacts)} artifacts, expires {index.expires.isoformat()}, "
          f"signed by {len(args.sign)} key(s) -> {dist / 'index.json'}")


def _verify(location: str, trusted_key):
    from relocpy import keys
    from relocpy.index_trust import SeenSerials, load_verified
    from relocpy.settings import ClientSettings

    settings = ClientSettings.resolve(trusted_keys=list(trusted_key or []))
    trusted = [keys.parse_trusted(k) for k in settings.trusted_keys]
    return load_verified(location, trusted, SeenSerials(settings.state_file), settings.fetch.timeout)


def index_verify(args) -> None:
    source, parsed = _verify(args.index, args.trusted_key)
    if args.json:
        print_json({"source": source, **parsed.model_dump(mode="json")})
        return
    print(f"ok: {source} serial {parsed.serial}, {len(parsed.artifacts)} artifacts, expires {parsed.expires.isoformat()}")


def index_schema(args) -> None:
    import json

    from relocpy.index import Index

    print(json.dumps(Index.model_json_schema(), indent=2))


def index_export_uv(args) -> None:
    from relocpy.index import write_atomic
    from relocpy.index_trust import index_location
    from relocpy.uvexport import export_bytes

    source, parsed = _verify(args.index, args.trusted_key)
    write_atomic(Path(args.out).absolute(), export_bytes(parsed, source))
    print(f"wrote {args.out} from {index_location(args.index)} serial {parsed.serial}")


def publish(args) -> None:
    from relocpy.progress import info
    from relocpy.publish import publish as publish_dist

    report = publish_dist(Path(args.dist), args.to, args.endpoint_url, [Path(k) for k in args.sign or []], args.dry_run)
    info(f"{len(report.uploaded)} {'to upload' if args.dry_run else 'uploaded'}, {len(report.skipped)} already there; "
         f"index: {report.index}")
