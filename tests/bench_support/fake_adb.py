#!/usr/bin/env python3
"""A stand-in for `adb` that plays a phone on this machine, for testing the adb runner's flow.

The phone's filesystem lives under $FAKE_ADB_ROOT; `adb shell CMD` runs CMD with the real
/bin/sh after mapping /data/local/tmp into that root, so our quoting meets a real shell. Every
call's argv is appended, as JSON, to $FAKE_ADB_ROOT/calls.jsonl.
"""

import json
import os
import shutil
import subprocess
import sys

ROOT = os.environ["FAKE_ADB_ROOT"]
PROPS = """[ro.product.manufacturer]: [Google]
[ro.product.model]: [Pixel Fake]
[ro.soc.model]: [GS201]
[ro.build.version.release]: [14]
[ro.build.version.sdk]: [34]
[ro.product.cpu.abi]: [arm64-v8a]
"""


def main(argv):
    with open(os.path.join(ROOT, "calls.jsonl"), "a") as log:
        log.write(json.dumps(argv) + "\n")
    if argv[:1] == ["-s"]:
        argv = argv[2:]
    if argv == ["devices"]:
        print("List of devices attached\nFAKE123\tdevice\n")
        return 0
    if argv[0] == "push":
        target = ROOT + argv[2]
        shutil.copyfile(argv[1], target)
        return 0
    if argv[0] == "shell":
        command = " ".join(argv[1:])
        if command == "getprop":
            sys.stdout.write(PROPS)
            return 0
        if command == "uname -r":
            print("5.10.157-android13-4")
            return 0
        command = command.replace("/data/local/tmp", ROOT + "/data/local/tmp")
        return subprocess.run(["/bin/sh", "-c", command]).returncode
    print(f"fake adb: unsupported {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
