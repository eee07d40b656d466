"""Command lines for the argparse parity test, judged by barman-cloud's own parsers.

Usage: python argparse_cases.py ENDPOINT BUCKET

For every barman-cloud-* tool, this takes the real argparse parser the tool builds
(captured from its parse_arguments, so nothing is written down by hand), generates
command lines that exercise each of its options (every spelling, --opt=value, the
shortest unique prefix, an ambiguous prefix, interleaving with positionals, repeats,
bad choices, bad numbers, missing values, mutually exclusive pairs, `--`), and asks
that parser whether it accepts each one.

Every generated line starts with `-t --endpoint-url ENDPOINT`, so a tool that accepts
it only tests connectivity. Output: one line per case,
    TOOL <TAB> VERDICT <TAB> ARG <US> ARG <US> ...
where VERDICT is `accept` (parsed), `reject` (argparse error, barman exits 3) or
`exit0` (--help / --version). Diagnostics go to stderr.
"""

import argparse
import contextlib
import io
import sys

from barman.clients import (
    cloud_backup,
    cloud_backup_delete,
    cloud_backup_keep,
    cloud_backup_list,
    cloud_backup_show,
    cloud_check_wal_archive,
    cloud_restore,
    cloud_walarchive,
    cloud_walrestore,
)
from barman.clients.cloud_cli import CLIErrorExit

TOOLS = {
    "barman-cloud-wal-archive": cloud_walarchive,
    "barman-cloud-wal-restore": cloud_walrestore,
    "barman-cloud-check-wal-archive": cloud_check_wal_archive,
    "barman-cloud-backup": cloud_backup,
    "barman-cloud-restore": cloud_restore,
    "barman-cloud-backup-list": cloud_backup_list,
    "barman-cloud-backup-show": cloud_backup_show,
    "barman-cloud-backup-keep": cloud_backup_keep,
    "barman-cloud-backup-delete": cloud_backup_delete,
}

US = "\x1f"


class Captured(Exception):
    pass


def parser_of(module):
    """The ArgumentParser the tool builds, taken at its parse_args call."""
    original = argparse.ArgumentParser.parse_args
    box = {}

    def grab(self, args=None, namespace=None):
        box["parser"] = self
        raise Captured()

    argparse.ArgumentParser.parse_args = grab
    try:
        module.parse_arguments([])
    except Captured:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original
    return box["parser"]


def verdict(parser, argv):
    sink = io.StringIO()
    try:
        with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            parser.parse_args(argv)
    except CLIErrorExit:
        return "reject"
    except SystemExit as e:
        return "exit0" if e.code in (0, None) else "reject"
    return "accept"


def main():
    endpoint, bucket = sys.argv[1], sys.argv[2]
    url = "s3://%s/pfx" % bucket
    positional_samples = {
        "destination_url": url,
        "source_url": url,
        "server_name": "srv",
        "wal_path": "pg_wal/000000010000000000000001",
        "wal_name": "000000010000000000000001",
        "wal_dest": "/tmp/barrelman-argparse-never-written",
        "backup_id": "20200101T000000",
        "recovery_dir": "/tmp/barrelman-argparse-never-written",
    }
    by_dest = {
        "endpoint_url": endpoint,
        "retention_policy": "REDUNDANCY 2",
        "backup_id": "20200101T000000",
        "target_lsn": "0/3000000",
        "target_time": "2020-01-01 00:00:00",
        "tablespace": "tbs:/tmp/barrelman-argparse-tbs",
        "aws_snapshot_lock_expiration_date": "2099-01-01T00:00:00.000Z",
        "aws_snapshot_lock_mode": "governance",
    }
    by_type = {
        "int": "2",
        "check_positive": "2",
        "check_non_negative": "2",
        "check_tli": "2",
        "check_size": "1MB",
        "__parse_tag": "k,v",
        "check_tag": "k,v",
        "check_aws_snapshot_lock_duration_range": "2",
        "check_aws_snapshot_lock_cool_off_period_range": "2",
    }

    out = []
    for tool, module in TOOLS.items():
        parser = parser_of(module)
        positionals = [a for a in parser._actions if not a.option_strings]
        options = [
            a
            for a in parser._actions
            if a.option_strings
            and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
        ]
        longs = [s for a in options for s in a.option_strings if s.startswith("--")]
        longs += ["--help", "--version"]
        pos = [positional_samples[a.dest] for a in positionals]
        required_groups = [g for g in parser._mutually_exclusive_groups if g.required]

        def takes_value(action):
            return action.nargs != 0 and not isinstance(
                action,
                (
                    argparse._StoreTrueAction,
                    argparse._StoreFalseAction,
                    argparse._StoreConstAction,
                    argparse._CountAction,
                    argparse._AppendConstAction,
                ),
            )

        def sample(action):
            if action.choices:
                return str(list(action.choices)[0])
            if action.dest in by_dest:
                return by_dest[action.dest]
            type_name = getattr(action.type, "__name__", None)
            if type_name in by_type:
                return by_type[type_name]
            return "x"

        def spelled(action, spelling=None):
            s = spelling or action.option_strings[-1]
            return [s, sample(action)] if takes_value(action) else [s]

        def complete(opts, tested):
            """Adds a member of each required group the case leaves out."""
            extra = []
            for g in required_groups:
                if not any(a in tested for a in g._group_actions):
                    extra += spelled(g._group_actions[-1])
            return extra + opts

        cases = []

        def case(args, tested=()):
            args = ["-t", "--endpoint-url", endpoint] + complete(args, tested)
            cases.append(args)

        # The bare line, and the global behaviours.
        case(pos)
        case(["-v"] + pos)
        case(["-vv"] + pos)
        case(["-qq"] + pos)
        case(["-v", "-q"] + pos)
        case(["--frobnicate"] + pos)
        case(pos[:-1])
        case(pos + ["extra-positional"])
        case(["--"] + pos)
        case(pos[:1] + ["--"] + pos[1:])
        cases.append(["--version"])
        cases.append(["-V"])
        cases.append(["--help"])
        cases.append(["--vers"])
        cases.append(["-vt", "--endpoint-url", endpoint] + complete(pos, ()))

        for action in options:
            t = (action,)
            for s in action.option_strings:
                case(spelled(action, s) + pos, t)
                if takes_value(action) and not s.startswith("--"):
                    case([s + sample(action)] + pos, t)  # -J2
            long = next((s for s in action.option_strings if s.startswith("--")), None)
            if long is None:
                continue
            if takes_value(action):
                case(["%s=%s" % (long, sample(action))] + pos, t)
                case(pos + [long], t)  # value missing at the end
                case(pos[:1] + spelled(action) + pos[1:], t)  # interleaved
                case(spelled(action) + spelled(action) + pos, t)  # repeated
                if action.choices:
                    case([long, "bogus-choice"] + pos, t)
                elif action.type is not None:
                    case([long, "abc"] + pos, t)  # not of the option's type
                    case([long, "-1"] + pos, t)  # a negative number as the value
            else:
                case(pos + [long], t)  # flag after the positionals
            for k in range(3, len(long)):
                prefix = long[:k]
                matches = [o for o in longs if o.startswith(prefix)]
                if len(matches) > 1 and long in matches and prefix not in matches:
                    case(spelled(action, prefix) + pos, t)  # ambiguous
                if matches == [long]:
                    case(spelled(action, prefix) + pos, t)  # unique prefix
                    break

        for group in parser._mutually_exclusive_groups:
            members = group._group_actions
            if len(members) >= 2:
                case(spelled(members[0]) + spelled(members[1]) + pos, tuple(members))

        seen = set()
        for args in cases:
            key = tuple(args)
            if key in seen:
                continue
            seen.add(key)
            out.append("%s\t%s\t%s" % (tool, verdict(parser, args), US.join(args)))
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
