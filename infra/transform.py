#!/usr/bin/env python3
"""Translates infra/template.yaml (SAM) into plain CloudFormation, offline, for checkov.

    ~/.cache/sagaflow/infra-venv/bin/python infra/transform.py [TEMPLATE] [OUT]

defaults: infra/template.yaml -> target/infra/template.json. Uses the SAM translator that
sam-cli bundles, the same way `sam validate` does (local CodeUri replaced by a dummy S3 URI),
with no AWS credentials and no network: the template names no managed policy, so the managed
policy map the translator could ask IAM for is empty.
"""

import json
import sys
from pathlib import Path

from samcli.lib.translate.sam_template_validator import SamTemplateValidator
from samcli.yamlhelper import yaml_parse

ROOT = Path(__file__).resolve().parent.parent


class NoManagedPolicies:
    """Stands in for samtranslator's ManagedPolicyLoader, which calls IAM."""

    def load(self):
        return {}


def main(argv):
    source = Path(argv[1]) if len(argv) > 1 else ROOT / "infra" / "template.yaml"
    out = Path(argv[2]) if len(argv) > 2 else ROOT / "target" / "infra" / "template.json"
    sam = yaml_parse(source.read_text())
    validator = SamTemplateValidator(sam, NoManagedPolicies(), region="eu-west-1")
    translated = yaml_parse(validator.get_translated_template_if_valid())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(translated, indent=1, sort_keys=False) + "\n")
    print(f"{source.relative_to(ROOT) if source.is_relative_to(ROOT) else source} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
