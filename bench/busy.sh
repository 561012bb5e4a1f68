# bench/busy.sh: sourced by bench/run.sh and bench/run_loaded.sh.
# How busy the machine is without us: the share of all cores' time not idle over 2 s (/proc/stat's
# first line: user nice system idle iowait irq softirq steal), and the processes using 20 % of a core or
# more over their lifetime. A run on a machine another process keeps busy measures that machine, not
# ours or the peers' speed: warn, and print the shares with the results.
busy_share() {
    local a b
    a=$(head -1 /proc/stat); sleep 2; b=$(head -1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x); split(b, y); t = 0
        for (i = 2; i <= 9; i++) t += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6])
        printf "%.0f", (t > 0 ? 100 * (t - idle) / t : 0) }'
}
busy_warn() {
    if [ "$1" -ge 10 ]; then
        echo "${0##*/}: warning: the machine was $1 % busy (all cores) in a 2 s check $2 the run; other processes: $(ps -eo pcpu=,comm= --sort=-pcpu |
            awk '$1 >= 20 { printf "%s%s %s %%", s, $2, $1; s = ", " } END { if (!s) printf "none above 20 %% of a core" }'); these are not an idle machine's numbers" >&2
    fi
}
