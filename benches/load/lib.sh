# Shared by the load scripts in this directory (sourced, not run). Expects `work` (a temporary
# directory the script owns) to be set; registers the clean-up of started processes and it.

export PATH="$PATH:/usr/sbin"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

wait_port() { # host:port [tries of 0.05 s]
  for _ in $(seq 1 "${2:-200}"); do
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listening on $1" >&2; return 1
}

# nginx's per-instance paths (logs off, temp files under DIR), for an `http { }` block.
temp_paths() { # dir
  echo "access_log off; client_body_temp_path $1/b; proxy_temp_path $1/p; fastcgi_temp_path $1/f; uwsgi_temp_path $1/u; scgi_temp_path $1/s;"
}

cpu_ticks() { # pids... -> utime+stime in clock ticks, summed
  local t=0
  for p in "$@"; do
    # fields after the ")" of comm: state is $1, utime is $12, stime is $13
    t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo $t
}

peak_rss_kb() { # pids... -> summed VmHWM
  local k=0
  for p in "$@"; do k=$((k + $(awk '/VmHWM/ {print $2}' "/proc/$p/status"))); done
  echo $k
}

rss_kb() { # pids... -> summed VmRSS
  local k=0
  for p in "$@"; do k=$((k + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done
  echo $k
}
