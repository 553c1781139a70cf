"""Renders chat templates exactly as transformers' apply_chat_template
does (Jinja2's ImmutableSandboxedEnvironment with trim_blocks,
lstrip_blocks, the loopcontrols extension, transformers' {% generation %}
tag, and its tojson, raise_exception and strftime_now), for gen.mjs.

Reads a JSON list of {"template", "vars", "now"} from stdin and writes a
JSON list of {"text"}, {"error"} (the template raised a TemplateError) or
{"python_error"} (Jinja2 failed otherwise, e.g. a TypeError) to stdout.
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(jinja2.ext.Extension):
    """transformers' {% generation %}...{% endgeneration %} (its
    AssistantTracker marks the body for the assistant mask and renders it
    unchanged)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def main():
    jobs = json.load(sys.stdin)
    out = []
    for job in jobs:
        now = datetime.datetime.fromisoformat(job["now"].replace("Z", "+00:00"))

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
            return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, Generation])
        env.filters["tojson"] = tojson
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)
        try:
            out.append({"text": env.from_string(job["template"]).render(**job["vars"])})
        except jinja2.exceptions.TemplateError as e:
            out.append({"error": str(e)})
        except Exception as e:  # a template bug Jinja2 reports as Python's
            out.append({"python_error": f"{type(e).__name__}: {e}"})
    json.dump(out, sys.stdout, ensure_ascii=False)


main()
