"""Write a copy of a profile with dotted keys set: profile_set.py SRC DST section.key=value …

Used by time_to_accuracy.sh for the recipe trials in docs/performance.md ("CPU fast path, quiet").
Values are read as int, float, true/false or a string; the copy's name is DST's file stem.
"""

import sys

import tomlkit

src, dst, *pairs = sys.argv[1:]
doc = tomlkit.parse(open(src, encoding="utf-8").read())
for pair in pairs:
    key, value = pair.split("=", 1)
    section, name = key.split(".")
    parsed: object
    try:
        parsed = int(value)
    except ValueError:
        try:
            parsed = float(value)
        except ValueError:
            parsed = {"true": True, "false": False}.get(value, value)
    doc[section][name] = parsed
doc["name"] = dst.rsplit("/", 1)[-1].removesuffix(".toml")
open(dst, "w", encoding="utf-8").write(tomlkit.dumps(doc))
