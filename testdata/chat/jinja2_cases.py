"""Writes engine/jinja/testdata/cases.json: small templates covering the
Jinja features chat templates use, rendered by Jinja2 configured as
transformers configures it (run: python3 testdata/chat/jinja2_cases.py).
"""
import json, jinja2, jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
cases = [
 "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }}",
 "{{ 'abcdef'[1:4] }}|{{ [1,2,3,4][::-1] }}|{{ [1,2,3][-1] }}|{{ 'x,y,z'.split(',') | join('+') }}",
 "{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ loop.index0 }}{{ '' if loop.last else ',' }}{% endfor %}",
 "{% set ns = namespace(n=0) %}{% for x in [1,2,3] %}{% set ns.n = ns.n + x %}{% set y = x %}{% endfor %}{{ ns.n }} {{ y is defined }}",
 "{{ none }} {{ true }} {{ 1.0 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ [1, 'a', none] }} {{ {'k': 'v'} }}",
 "{{ {'a': [1, {'b': 'é\"'}]} | tojson }}|{{ {'a': 1} | tojson(indent=2) }}",
 "{{ x is none }} {{ y is defined }} {{ 'abc' is string }} {{ 3 is odd }} {{ [1] is iterable }} {{ 'b' in 'abc' }} {{ 2 not in [1] }}",
 "  {% if true %}\n    kept\n  {% endif %}\nend {{- '  x' }}  \n{%- if true -%}  y  {%- endif %}",
 "{{ '  Hello World  ' | trim | lower | replace('world', 'go') | title }} {{ 'ab' * 3 }} {{ 'a' ~ 1 ~ none }} {{ ['b','a'] | sort | first }} {{ [{'n': 1}, {'n': 2}] | map(attribute='n') | list }}",
 "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{{ [{'r': 'u'}, {'r': 'a'}] | selectattr('r', 'equalto', 'a') | list | length }}",
 "{{ [1,2,3,4] | select('odd') | list }} {{ ['a','b','c'] | reject('equalto', 'b') | join(',') }} {{ [0, 1, '', none, 'x'] | select | list }} {{ [0, 1, '', 'x'] | reject | list }} {{ [{'r': 'a'}, {'r': 'b'}] | rejectattr('r', 'equalto', 'a') | list }}",
 "{{ [3, 1, 2] | min }} {{ [3, 1, 2] | max }} {{ ['b', 'A', 'c'] | min }} {{ ['b', 'A', 'c'] | min(case_sensitive=true) }} {{ [{'n': 2}, {'n': 1}] | max(attribute='n') }} {{ none | map('upper') | list }} {{ none | selectattr('x') | list }} {{ 'abc'['type'] is defined }} {{ [1]['x'] is defined }} {{ 'x' in nothing }}",
 "a\r\nb\rc{% if true %}\n{% endif %}\n\n",
 "end\n",
 "{%- filter trim -%}\n  {{ 'a' }}  \n{%- endfilter -%}|{% filter upper | replace('B', 'x') %}ab{% if true %}c{% endif %}{% endfilter %}|{% filter indent(2) %}1\n2{% endfilter %}",
 "{% set d = {0: 'a', 512: 'b', 'k': 1, none: 2, 2.5: 4} %}{{ d }} {{ d[512] }} {{ d[0.0] }} {{ 512 in d }} {{ '512' in d }} {{ d.get(none) }} {{ d | tojson }} {{ d.keys() | list }} {{ {1: 'x', 1.0: 'y', true: 'z'} }}|{% for k, v in {2: 'b', 1: 'a'} | dictsort %}{{ k + 1 }}={{ v }};{% endfor %}{% for k in {3: 'c'} %}{{ k * 2 }}{% endfor %}",
 "{{ 'x' if false }}|{{ 'a\nb'.startswith(('b', 'a')) }}|{{ 'aXbXc'.rsplit('X', 1) }}|{{ '  s '.strip() }}|{{ 'ab'.upper() }}",
]
out = []
for c in cases:
    out.append({"template": c, "vars": {"x": None}, "want": env.from_string(c).render(x=None)})
with open("engine/jinja/testdata/cases.json", "w") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write("\n")
