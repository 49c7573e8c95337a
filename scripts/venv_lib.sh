# Sourced by install.sh and vllm_cpu.sh: a venv kept up to date by a stamp of its install inputs, and its pip.

# venv_current VENV WANT: VENV's stamp says WANT (the inputs it was installed from have not changed)
venv_current() { [ -f "$1/.install-stamp" ] && [ "$(cat "$1/.install-stamp")" = "$2" ]; }

# venv_done VENV WANT: record WANT as VENV's stamp
venv_done() { echo "$2" > "$1/.install-stamp"; }

# venv_pip VENV ARGS...: VENV's pip without the noise of this machine's extra (empty) local indexes; a pip failure
# still fails the caller (which sets -o pipefail)
venv_pip() {
    local venv=$1
    shift
    "$venv/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
