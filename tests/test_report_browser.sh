#!/usr/bin/env bash
# The run report in a real browser (Debian's chromium, headless): ddx-report on the fixture run
# folder tests/data/report_run (malformed log lines included), then
#   - the page's console is silent (no script error, no failed resource) and the script ran to
#     its end (body data-plots-ready = 6 plots);
#   - the DOM after load carries the logged values in the plots and names the skipped lines;
#   - a screenshot is not blank and shows the loss curve's colour;
#   - the console check does catch an error: the same page with a broken script fails it.
#   test_report_browser.sh PATH/TO/ddx-report PATH/TO/test_report   (run from tests/)
set -u
report=$1 helper=$2
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "SKIP: chromium not installed (apt-get install chromium; tools/install-deps.sh does)"
    echo "report-browser: 0 passed, 0 failed, 1 skipped"
    exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r data/report_run "$tmp/run"

# chromium: headless, its own profile, no sandbox (CI runs as root), console to stderr.
chrome() { timeout 60 "$browser" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/profile" \
    --enable-logging=stderr --v=0 --hide-scrollbars "$@"; }
consoles() { grep -E 'CONSOLE[:(]' "$1"; }

"$report" "$tmp/run" >"$tmp/r.out" 2>"$tmp/r.err"
rc=$?
[ $rc = 0 ] && [ -s "$tmp/run/report.html" ] && ok || bad "ddx-report on the fixture: exit $rc: $(cat "$tmp/r.err")"
grep -q '5 line(s) skipped' "$tmp/r.err" && ok || bad "ddx-report does not say 5 lines were skipped: $(cat "$tmp/r.err")"

page="file://$tmp/run/report.html"
chrome --dump-dom "$page" >"$tmp/dom.html" 2>"$tmp/dom.err"
[ -s "$tmp/dom.html" ] && ok || bad "chromium --dump-dom gave nothing: $(tail -3 "$tmp/dom.err")"
if consoles "$tmp/dom.err" >/dev/null; then bad "console messages on the page: $(consoles "$tmp/dom.err" | head -5)"; else ok; fi
grep -q 'data-plots-ready="6"' "$tmp/dom.html" && ok || bad "the page's script did not run to its end (no data-plots-ready=\"6\")"
for want in 'data-y="1.25 0.75 0.5 0.375 0.3125 0.25"' 'data-y="123.5 98.25"' 'data-y="40.5 42.25 44 43.5 45.75 46"' \
    '<li>log.jsonl line 3:' '<li>log.jsonl line 13:' 'step 60</figcaption>'; do
    grep -qF "$want" "$tmp/dom.html" && ok || bad "the rendered DOM lacks '$want'"
done
# The config's <script> text is shown escaped, never run: the title is the report's own.
grep -q '<title>ddx run run</title>' "$tmp/dom.html" && ok || bad "the page title changed: $(grep -o '<title>[^<]*' "$tmp/dom.html")"

chrome --window-size=1200,900 --screenshot="$tmp/shot.png" "$page" >/dev/null 2>"$tmp/shot.err"
if [ -s "$tmp/shot.png" ] && "$helper" --nonblank "$tmp/shot.png" 31 119 180; then ok; else bad "screenshot blank or without the loss curve: $(tail -2 "$tmp/shot.err")"; fi

# Negative control: the console check sees a script error.
sed 's|</body>|<script>no_such_function();</script></body>|' "$tmp/run/report.html" >"$tmp/broken.html"
chrome --dump-dom "file://$tmp/broken.html" >/dev/null 2>"$tmp/broken.err"
consoles "$tmp/broken.err" | grep -q 'no_such_function' && ok || bad "the console check missed a script error"

echo "report-browser: $pass passed, $fail failed"
[ "$fail" = 0 ]
