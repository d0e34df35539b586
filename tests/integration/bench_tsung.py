"""Benchmark (not a test): Tsung 1.7, an independent load tool, against one server.

    .venv/bin/python -m tests.integration.bench_tsung --target vireo|prosody|ejabberd
        [--users 100] [--reps 3] [--port-base 25800] [--hashed] [--warm]

The server is started and its accounts made by `../shared/bench/xmppbench.py`
(the same generated config as every other scenario). Tsung logs in `--users`
users (SASL PLAIN, bind, session), each sends initial presence, gets its
roster, waits and closes. Tsung's own transaction timers give the mean login
(from the SASL `<auth/>` to the session result) and roster get, in ms.
Needs Debian's `tsung` package.

`--hashed` gives every server `authentication = "internal_hashed"` (Vireo
hashes either way; Prosody then checks a PBKDF2 of 10,000 rounds too, instead
of comparing plain text). `--warm` runs Tsung once, unmeasured, before the
measured run on the same server: Vireo then answers from its cache of verified
passwords, without PBKDF2 (storage/accounts.py).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "shared" / "bench"
USER_PREFIX = "tsung"

SCENARIO = """<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "/usr/share/tsung/tsung-1.0.dtd">
<tsung loglevel="warning" dumptraffic="false" version="1.0">
 <clients><client host="localhost" use_controller_vm="true" maxusers="{users}"/></clients>
 <servers><server host="{addr}" port="{port}" type="tcp"/></servers>
 <load><arrivalphase phase="1" duration="{arrival}" unit="second">
  <users maxnumber="{users}" interarrival="0.02" unit="second"/>
 </arrivalphase></load>
 <options>
  <option type="ts_jabber" name="global_number" value="{users}"/>
  <option type="ts_jabber" name="userid_max" value="{users}"/>
  <option type="ts_jabber" name="domain" value="{domain}"/>
  <option type="ts_jabber" name="username" value="{prefix}"/>
  <option type="ts_jabber" name="passwd" value="{prefix}"/>
 </options>
 <sessions>
  <session probability="100" name="login-roster" type="ts_jabber">
   <request><jabber type="connect" ack="local"/></request>
   <transaction name="login">
    <request><jabber type="auth_sasl" ack="local"/></request>
    <request><jabber type="connect" ack="local"/></request>
    <request><jabber type="auth_sasl_bind" ack="local"/></request>
    <request><jabber type="auth_sasl_session" ack="local"/></request>
   </transaction>
   <request><jabber type="presence:initial" ack="no_ack"/></request>
   <thinktime value="1"/>
   <transaction name="roster">
    <request><jabber type="iq:roster:get" ack="local"/></request>
   </transaction>
   <thinktime value="1"/>
   <request><jabber type="close" ack="no_ack"/></request>
  </session>
 </sessions>
</tsung>
"""

# A "stats:" line of tsung.log: name, then count and mean (ms) of the interval
# since the previous dump (every 10 s), then more columns.
STATS_LINE = re.compile(r"^stats: (tr_\w+|error_\w+|connect|page|request) (\d+) (\S+) ")


def load_xmppbench():
    sys.path.insert(0, str(BENCH))
    import xmppbench  # lives beside the project, not in it
    return xmppbench


def start_server(xb, args: argparse.Namespace):
    options = xb.build_parser().parse_args(
        ["idle", "--target", args.target, "--port-base", str(args.port_base)]
        + (["--hashed"] if args.hashed else []))
    xb.resolve(options)
    server = xb.Server(options, "idle")
    server.start()
    for i in range(1, args.users + 1):  # Tsung's password for user N is the prefix and N
        options.password = f"{USER_PREFIX}{i}"
        server.add_users([f"{USER_PREFIX}{i}"])
    return server, options


def final_stats(log: Path) -> dict[str, tuple[int, float]]:
    """Count and mean (ms) over the whole run, per transaction or error name."""
    counts: dict[str, int] = {}
    totals: dict[str, float] = {}
    for line in log.read_text().splitlines():
        match = STATS_LINE.match(line)
        if match:
            name, count = match.group(1), int(match.group(2))
            counts[name] = counts.get(name, 0) + count
            totals[name] = totals.get(name, 0.0) + count * float(match.group(3))
    return {name: (count, totals[name] / count if count else 0.0)
            for name, count in counts.items()}


def run_tsung(options, args: argparse.Namespace, ports: dict[str, int]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-tsung-"))
    try:
        scenario = work / "scenario.xml"
        scenario.write_text(SCENARIO.format(
            users=args.users, addr=options.addr, port=ports["c2s"], domain=options.domain,
            prefix=USER_PREFIX, arrival=max(10, args.users // 20)))
        subprocess.run(["tsung", "-f", str(scenario), "-l", str(work / "log"), "start"],
                       check=True, stdout=subprocess.DEVNULL, timeout=args.users + 300)
        logs = sorted((work / "log").glob("*/tsung.log"))
        if not logs:
            raise RuntimeError("tsung wrote no tsung.log")
        return final_stats(logs[-1])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=("vireo", "prosody", "ejabberd"), default="vireo")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--port-base", type=int, default=25800)
    parser.add_argument("--hashed", action="store_true",
                        help="authentication = internal_hashed on every server")
    parser.add_argument("--warm", action="store_true",
                        help="one unmeasured Tsung run first, on the same server")
    parser.add_argument("--keep", action="store_true", help="keep Tsung's logs")
    args = parser.parse_args()
    xb = load_xmppbench()
    logins, rosters = [], []
    for rep in range(args.reps):
        server, options = start_server(xb, args)
        try:
            if args.warm:
                run_tsung(options, args, xb.ports(options))
            stats = run_tsung(options, args, xb.ports(options))
        finally:
            server.stop()
            server.cleanup()
        login, roster = stats.get("tr_login"), stats.get("tr_roster")
        errors = {name: value[0] for name, value in stats.items() if name.startswith("error")}
        print(f"rep {rep + 1}: login {login}, roster {roster}, errors {errors}", flush=True)
        if not login or not roster or login[0] < args.users or roster[0] < args.users:
            sys.exit(f"not every user logged in and got its roster: {stats}")
        logins.append(login[1])
        rosters.append(roster[1])
    print(f"{args.target}: {args.users} users, medians of {args.reps}: "
          f"roster get {statistics.median(rosters):.2f} ms, "
          f"login {statistics.median(logins):.2f} ms")


if __name__ == "__main__":
    main()
