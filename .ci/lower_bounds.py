"""Print `name==lower` for every requirement in setup.cfg that declares a lower bound (`>=`).

CI installs these as constraints to run the fast suite against the oldest releases the library
claims to support: setup.cfg may only declare lower bounds that this run keeps true.
"""

import configparser
import sys
from pathlib import Path

from packaging.requirements import Requirement

config = configparser.ConfigParser()
config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
lines = config.get("options", "install_requires").splitlines()
for extra in config.options("options.extras_require"):
    lines += config.get("options.extras_require", extra).splitlines()
pins = {}
for line in filter(None, (line.strip() for line in lines)):
    requirement = Requirement(line)
    lower = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    if lower:
        pins[requirement.name.lower()] = lower[0]
sys.stdout.write("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
