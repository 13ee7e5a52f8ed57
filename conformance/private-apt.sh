# Sourced by the scripts that fetch packages from Debian's newer releases without touching the
# host's apt: `private_apt DIR LINE...` writes a sources list of LINEs ("deb trixie main",
# "deb-src trixie main", ...) on the mirror the host's apt already uses, and sets `apt_opts`:
# the apt-get options of a configuration of its own (sources list, lists and cache under DIR).
# Then `apt-get "${apt_opts[@]}" update`, `... download PKG/RELEASE`, `... source ...`.

private_apt() {
  local apt_dir="$1"
  shift
  # The Debian mirror the host's apt already uses (deb822 or one-line sources).
  local mirror
  mirror=$(
    {
      cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -nE 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
      cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p'
    } | grep -E '/debian/?$' | head -n1 || true
  )
  if [ -z "$mirror" ]; then
    echo "no Debian mirror in the host's apt sources" >&2
    return 1
  fi
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg line
  for line in "$@"; do
    read -r type suite components <<<"$line"
    echo "$type [signed-by=$keyring] $mirror $suite $components"
  done >"$apt_dir/sources.list"
  apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::State::status=/dev/null"
    -o "Acquire::Languages=none"
    -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false"
    -o "Acquire::IndexTargets::deb::CNF::DefaultEnabled=false"
    -o "APT::Get::List-Cleanup=0"
    -o "APT::Sandbox::User=root"
  )
}
