#!/usr/bin/env bash
# Every DDX_* environment variable the sources read is in the table of docs/ARCHITECTURE.md
# ("## Environment variables"), and every variable of the table is still read somewhere.
#   check_env_docs.sh [SOURCE_ROOT]      (default: the folder above this script)
# A read is a DDX_* string literal passed to any function whose name contains "env" (getenv,
# secure_getenv, or a helper such as env_flag("DDX_X")), os.environ[...] / os.environ.get(...)
# in Python, or $DDX_X / ${DDX_X...} in a shell script (an assignment such as
# `export DDX_X=...` only sets it). Prints one line per problem; exit 1 if there are any.
set -uo pipefail
root=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
cd "$root" || { echo "check_env_docs: cannot enter $root"; exit 1; }
doc=docs/ARCHITECTURE.md
dirs=(runtime kernels models train eval bench tests config tools)
present=()
for d in "${dirs[@]}"; do [ -d "$d" ] && present+=("$d"); done

read_c=$(grep -rhoE --include='*.c' --include='*.h' --include='*.cu' --include='*.cuh' --include='*.cpp' \
             '[A-Za-z_]*[eE][nN][vV][A-Za-z_]*[[:space:]]*\([[:space:]]*"DDX_[A-Z0-9_]+"' "${present[@]}" |
         grep -oE 'DDX_[A-Z0-9_]+')
read_py=$(grep -rhoE --include='*.py' 'environ(\.get)?[[:space:]]*[[(][[:space:]]*["'"'"']DDX_[A-Z0-9_]+' "${present[@]}" |
          grep -oE 'DDX_[A-Z0-9_]+')
read_sh=$(grep -rhoE --include='*.sh' --exclude=check_env_docs.sh '\$\{?DDX_[A-Z0-9_]+' "${present[@]}" | grep -oE 'DDX_[A-Z0-9_]+')
used=$(printf '%s\n' $read_c $read_py $read_sh | sort -u | grep . || true)

if ! grep -q '^## Environment variables' "$doc"; then
    echo "check_env_docs: $doc has no '## Environment variables' section"
    exit 1
fi
# Table rows of that section (up to the next "## "): | `DDX_NAME` | ...
documented=$(awk '/^## Environment variables/ { on = 1; next } /^## / { on = 0 } on' "$doc" |
             grep -oE '^\| *`DDX_[A-Z0-9_]+`' | grep -oE 'DDX_[A-Z0-9_]+' | sort -u)

status=0
for v in $used; do
    if ! grep -qx "$v" <<<"$documented"; then
        where=$(grep -rlE --include='*.c' --include='*.h' --include='*.cu' --include='*.cuh' --include='*.cpp' \
                    --include='*.py' --include='*.sh' "$v([^A-Z0-9_]|$)" "${present[@]}" | head -3 | tr '\n' ' ')
        echo "check_env_docs: $v is read (${where% }) but missing from the table in $doc (## Environment variables)"
        status=1
    fi
done
for v in $documented; do
    if ! grep -qx "$v" <<<"$used"; then
        echo "check_env_docs: $v is in the table in $doc but nothing reads it; remove its row"
        status=1
    fi
done
n_used=$(grep -c . <<<"$used")
if [ $status = 0 ]; then
    echo "check_env_docs: all $n_used DDX_* variables read by the sources are documented"
fi
exit $status
