/*
 * kvx-bench sweep --plot: the data and a gnuplot script in a temporary
 * folder, gnuplot run on it by PID and killed past PLOT_TIMEOUT_S.
 */
#include "bench_sweep.h"
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PLOT_TIMEOUT_S 30
#define PLOT_MAX_SERIES (KVXI_SWEEP_MAX * 4 + 2)

/* A gnuplot single-quoted string: ' doubled. */
static void gp_str(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s != '\0'; s++) {
        fputs(*s == '\'' ? "''" : (char[]){*s, '\0'}, f);
    }
    fputc('\'', f);
}

/* Writes DIR/kvxN.dat per (dir, pattern, batch) and DIR/baseN.dat per
 * baseline test run, and the plot commands into SCRIPT. */
static int write_plot(const kvxi_sweep_opts_t *o, const kvxi_sweep_row_t *rows,
                      int nrows, const kvxi_pt_result_t base[2][KVXI_SWEEP_MAX],
                      const char *const base_name[2], const char *dir,
                      FILE *script)
{
    char path[4096], title[96];
    int done[KVXI_SWEEP_MAX * KVXI_SWEEP_MAX * 4] = {0};
    int ns = 0;

    fprintf(script, "plot ");
    for (int r = 0; r < nrows && ns < PLOT_MAX_SERIES; r++) {
        FILE *f;

        if (done[r] || rows[r].skipped) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/kvx%d.dat", dir, ns);
        if ((f = fopen(path, "w")) == NULL) {
            return -1;
        }
        for (int q = r; q < nrows; q++) { /* same series, rising chunks */
            if (!rows[q].skipped && rows[q].pull == rows[r].pull &&
                rows[q].scatter == rows[r].scatter &&
                rows[q].batch == rows[r].batch) {
                fprintf(f, "%zu %.6g\n", rows[q].chunk,
                        rows[q].bps / 1048576.0);
                done[q] = 1;
            }
        }
        fclose(f);
        snprintf(title, sizeof(title), "kvx %s %s batch %zu",
                 rows[r].pull ? "pull" : "push",
                 rows[r].scatter ? "scatter" : "contig", rows[r].batch);
        fprintf(script, "%s", ns++ ? ", \\\n     " : "");
        gp_str(script, path);
        fprintf(script, " using 1:2 with linespoints title ");
        gp_str(script, title);
    }
    for (int d = 0; d < 2; d++) {
        FILE *f;

        if (base_name[d] == NULL) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/base%d.dat", dir, d);
        if ((f = fopen(path, "w")) == NULL) {
            return -1;
        }
        for (int c = 0; c < o->nchunks; c++) {
            if (base[d][c].present) {
                fprintf(f, "%zu %.6g\n", o->chunks[c],
                        base[d][c].value / 1048576.0);
            }
        }
        fclose(f);
        snprintf(title, sizeof(title), "ucx_perftest %s", base_name[d]);
        fprintf(script, "%s", ns++ ? ", \\\n     " : "");
        gp_str(script, path);
        fprintf(script, " using 1:2 with linespoints dashtype 2 lw 2 title ");
        gp_str(script, title);
    }
    fprintf(script, "\n");
    return ns > 0 ? 0 : -1;
}

/* Runs gnuplot SCRIPT by PID, its output into LOG; killed past the limit.
 * Returns 0 when it exited 0. */
static int run_gnuplot(const char *exe, const char *script, const char *log)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    time_t end = time(NULL) + PLOT_TIMEOUT_S;
    int status = -1;
    pid_t pid;

    if (fd < 0) {
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execl(exe, "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    close(fd);
    if (pid < 0) {
        return -1;
    }
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (time(NULL) > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr,
                    "kvx-bench: gnuplot timed out after %d s "
                    "(killed)\n",
                    PLOT_TIMEOUT_S);
            return -1;
        }
        usleep(20000);
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int kvxi_sweep_plot(const kvxi_sweep_opts_t *o, const kvxi_sweep_row_t *rows,
                    int nrows, const kvxi_pt_result_t base[2][KVXI_SWEEP_MAX],
                    const char *const base_name[2])
{
    char exe[4096], dir[] = "/tmp/kvx-bench-plot.XXXXXX", script[4200],
                    log[4200], line[256] = "";
    size_t l = strlen(o->plot);
    int rc = -1;
    FILE *f;

    if (kvxi_bench_find_on_path("gnuplot", exe, sizeof(exe)) != 0) {
        printf("plot skipped: gnuplot not found\n");
        return -1;
    }
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "kvx-bench: plot: temporary folder: %s\n",
                strerror(errno));
        return -1;
    }
    snprintf(script, sizeof(script), "%s/plot.gp", dir);
    snprintf(log, sizeof(log), "%s/gnuplot.log", dir);
    if ((f = fopen(script, "w")) != NULL) {
        if (strcmp(o->plot + l - 4, ".svg") == 0) {
            fprintf(f, "set terminal svg size 960,600 dynamic\n");
        } else {
            fprintf(f, "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) "
                       "{ set terminal pngcairo size 960,600 } "
                       "else { set terminal png size 960,600 }\n");
        }
        /* plain text: names like UCX_TLS are not subscripts */
        fprintf(f, "set termoption noenhanced\nset output ");
        gp_str(f, o->plot);
        fprintf(f,
                "\nset title 'kvx-bench sweep over %s (UCX_TLS=%s), "
                "%lu iterations'\n"
                "set logscale x 2\nset xlabel 'chunk (bytes)'\n"
                "set ylabel 'MiB/s'\nset key outside right\n"
                "set grid\nset format x '%%.0b%%B'\n",
                o->transport, o->tls, o->iters);
        rc = write_plot(o, rows, nrows, base, base_name, dir, f);
        if (fclose(f) != 0) {
            rc = -1;
        }
    }
    if (rc == 0) {
        rc = run_gnuplot(exe, script, log);
    }
    if (rc == 0) {
        printf("plot: %s\n", o->plot);
    } else if ((f = fopen(log, "r")) != NULL) {
        while (fgets(line, sizeof(line), f) != NULL) { /* keep the last */
        }
        fclose(f);
        fprintf(stderr, "kvx-bench: plot %s failed%s%s", o->plot,
                line[0] ? ": " : "\n", line);
    } else {
        fprintf(stderr, "kvx-bench: plot %s failed\n", o->plot);
    }
    for (int i = 0; i < PLOT_MAX_SERIES; i++) {
        snprintf(line, sizeof(line), "%s/kvx%d.dat", dir, i);
        unlink(line);
    }
    snprintf(line, sizeof(line), "%s/base0.dat", dir);
    unlink(line);
    snprintf(line, sizeof(line), "%s/base1.dat", dir);
    unlink(line);
    unlink(script);
    unlink(log);
    rmdir(dir);
    return rc;
}
