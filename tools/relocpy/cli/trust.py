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
    parser = verb(index, "build", index_build, "write DIST/index.json: the index and its signatures, in one file")
    parser.add_argument("dist", metavar="DIST", help="directory holding the archives and their <archive>.json metadata")
    parser.add_argument("--base-url", required=True, metavar="URL", help="URL the artifacts will be served from")
    repeatable(parser, "--sign", "private key file to sign with (several rotate keys)", required=True, metavar="KEYFILE")
    parser.add_argument("--channel", metavar="NAME", help="the channel this index is of, signed into it; clients "
                        "refuse another channel's index (default: stable)")
    parser.add_argument("--expires", default="30d", metavar="DURATION",
                        help="how long clients accept the index: e.g. 30d, 12h; at most 365d (default 30d)")
    parser.add_argument("--previous", metavar="LOCATION",
                        help="the published index the new serial continues: a URL or path of index.json, or "
                        "a publish location (directory or s3://BUCKET/PREFIX; nothing published there yet "
                        "means serial 1); it must verify with a --sign or --trusted-key key")
    _add_previous_keys(parser)
    parser = verb(index, "verify", index_verify, "check the signature, channel, expiry and serial of an index")
    parser.add_argument("index", metavar="INDEX", help=INDEX_HELP)
    add_trust(parser)
    add_json(parser, "the verified index")
    verb(index, "schema", index_schema, "print the JSON Schema of index.json and of the index it holds")
    parser = verb(index, "export-uv", index_export_uv,
                  "write uv's download-metadata JSON for a verified index (uv --python-downloads-json-url)")
    parser.add_argument("index", metavar="INDEX", help=INDEX_HELP)
    parser.add_argument("--out", required=True, metavar="FILE", help="where to write uv's JSON")
    add_trust(parser)

    parser = verb(commands, "publish", publish, "upload artifacts and metadata, then the signed index")
    parser.add_argument("dist", metavar="DIST", help="directory holding archives, metadata and the signed index")
    parser.add_argument("--to", required=True, metavar="DIR_OR_S3_URL", help="a directory, or s3://BUCKET/PREFIX")
    parser.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint for R2, MinIO and other S3-speaking stores")
    parser.add_argument("--dry-run", action="store_true", help="show what would be uploaded; write nothing")
    repeatable(parser, "--sign", "key file: verifies the published index and, if it has entries ours lacks "
               "(an earlier release), merges them and re-signs", metavar="KEYFILE")
    _add_previous_keys(parser)


def _add_previous_keys(parser) -> None:
    repeatable(parser, "--trusted-key", "public key ('ed25519:<base64>' or a file) the published index may be "
               "signed by, besides the --sign keys: the old key during a rotation", metavar="KEY")


def keys_generate(args) -> None:
    from relocpy import keys

    print(keys.generate(Path(args.out)))


def keys_public(args) -> None:
    from relocpy import keys

    print(keys.public_line(keys.load_private(Path(args.keyfile)).public_key()))


def index_build(args) -> None:
    from relocpy import keys
    from relocpy.index import DEFAULT_CHANNEL, channel_name
    from relocpy.index_build import build_index, parse_duration, previous_index, write_signed

    channel = channel_name(args.channel or DEFAULT_CHANNEL)
    expires_in = parse_duration(args.expires)
    signing = keys.PublisherKeys.load([Path(k) for k in args.sign], list(args.trusted_key or []))  # before hashing
    dist = Path(args.dist)
    previous = previous_index(dist, args.previous, signing.trusted, channel)
    index = build_index(dist, args.base_url, expires_in, channel, previous)
    write_signed(dist, index, signing.private)
    print(f"index serial {index.serial} of channel {channel}: {len(index.artifacts)} artifacts, expires "
          f"{index.expires.isoformat()}, signed by {len(args.sign)} key(s) -> {dist / 'index.json'}")


def _verify(args):
    from relocpy.index_trust import fetch_verified
    from relocpy.settings import ClientSettings

    settings = ClientSettings.resolve(trusted_keys=list(args.trusted_key or []), channel=args.channel)
    return fetch_verified(args.index, settings)


def index_verify(args) -> None:
    source, parsed = _verify(args)
    if args.json:
        print_json({"source": source, **parsed.model_dump(mode="json")})
        return
    print(f"ok: {source} channel {parsed.channel} serial {parsed.serial}, {len(parsed.artifacts)} artifacts, "
          f"expires {parsed.expires.isoformat()}")


def index_schema(args) -> None:
    import json

    from relocpy.index import Envelope, Index

    schemas = {"index.json": Envelope.model_json_schema(), "signed": Index.model_json_schema()}
    print(json.dumps(schemas, indent=2))


def index_export_uv(args) -> None:
    from relocpy.index import write_atomic
    from relocpy.index_trust import index_location
    from relocpy.uvexport import export_bytes

    source, parsed = _verify(args)
    write_atomic(Path(args.out).absolute(), export_bytes(parsed, source))
    print(f"wrote {args.out} from {index_location(args.index)} serial {parsed.serial}")


def publish(args) -> None:
    from relocpy.progress import info
    from relocpy.publish import publish as publish_dist

    report = publish_dist(Path(args.dist), args.to, args.endpoint_url, [Path(k) for k in args.sign or []], args.dry_run,
                          list(args.trusted_key or []))
    info(f"{len(report.uploaded)} {'to upload' if args.dry_run else 'uploaded'}, {len(report.skipped)} already there; "
         f"index: {report.index}")
