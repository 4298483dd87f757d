/* reptile_sgd.c: Reptile with an SGD inner loop in plain C, checked by `minireptile conformance check`.
 *
 * A port of minireptile's reference (forward, backward, SGD inner loop, Reptile outer update) in C99,
 * reading the golden suite that `minireptile conformance export SUITE` writes and writing its results
 * as .npy files that `minireptile conformance check --results RESULTS` compares:
 *
 *     minireptile conformance export suite
 *     cc -std=c99 -O2 -o reptile_sgd docs/ports/reptile_sgd.c -lm
 *     ./reptile_sgd suite results
 *     minireptile conformance check --results results
 *
 * It reads suite/index.txt (one line per case and per array, see docs/conformance.md) and the raw
 * little-endian arrays raw/NAME/KEY.bin, runs every case whose inner optimizer is SGD, and writes
 * results/NAME/OUTPUT.npy for the outputs loss, grad, phi_1 ... phi_k, theta_1, theta_10, theta_100.
 * Stages it does not compute (hvp, FOMAML, MAML, Adam cases) are reported as skipped.
 *
 * Layout: θ is flat; layer l holds W_l (out, in) row-major, then b_l (out); sizes s_0 ... s_L.
 * Everything is double precision; loops run in the order of the formulas, no BLAS.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAXL 8         /* layers */
#define MAXW 256       /* layer width */
#define MAXB 64        /* minibatch */

typedef struct {
    char name[128];
    int L, sizes[MAXL + 1];
    char act[8], loss[8], opt[16];
    double lr;
} Case;

typedef struct {       /* one array of a case, read from raw/NAME/KEY.bin */
    int ndim;
    long dims[8], n;
    void *data;
} Array;

static const char *suite_dir;

static void die(const char *msg, const char *what) {
    fprintf(stderr, "reptile_sgd: %s %s\n", msg, what);
    exit(2);
}

/* finds the array line of case `name`, key `key` in index.txt and reads its raw file */
static Array load(const char *name, const char *key) {
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/index.txt", suite_dir);
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open", path);
    Array a = {0};
    while (fgets(line, sizeof line, f)) {
        char kind[16], cname[128], ckey[128], dtype[16];
        int off = 0;
        if (sscanf(line, "%15s %127s %127s %15s %d%n", kind, cname, ckey, dtype, &a.ndim, &off) != 5) continue;
        if (strcmp(kind, "array") || strcmp(cname, name) || strcmp(ckey, key)) continue;
        char *p = line + off;
        a.n = 1;
        for (int d = 0; d < a.ndim; d++) {
            int used;
            sscanf(p, "%ld%n", &a.dims[d], &used);
            p += used;
            a.n *= a.dims[d];
        }
        char raw[512];
        sscanf(p, "%511s", raw);
        snprintf(path, sizeof path, "%s/%s", suite_dir, raw);
        FILE *r = fopen(path, "rb");
        if (!r) die("cannot open", path);
        a.data = malloc(a.n * 8 + 8);      /* float64 and int64 are both 8 bytes */
        if (fread(a.data, 8, a.n, r) != (size_t)a.n) die("short read", path);
        fclose(r);
        fclose(f);
        return a;
    }
    die("no array", key);
    return a;
}

/* writes a float64 .npy file (version 1.0 header, little-endian) */
static void save_npy(const char *dir, const char *key, const double *x, int ndim, const long *dims) {
    char path[1024], header[256], shape[128] = "(";
    long n = 1;
    for (int d = 0; d < ndim; d++) {
        char dim[32];
        snprintf(dim, sizeof dim, ndim == 1 ? "%ld," : (d ? " %ld" : "%ld"), dims[d]);
        if (ndim > 1 && d < ndim - 1) strcat(dim, ",");
        strcat(shape, dim);
        n *= dims[d];
    }
    strcat(shape, ")");
    int len = snprintf(header, sizeof header, "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }", shape);
    while ((10 + len + 1) % 64) header[len++] = ' ';
    header[len++] = '\n';
    snprintf(path, sizeof path, "%s/%s.npy", dir, key);
    FILE *f = fopen(path, "wb");
    if (!f) die("cannot write", path);
    uint16_t hl = (uint16_t)len;
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&hl, 2, 1, f);
    fwrite(header, 1, len, f);
    fwrite(x, 8, n, f);
    fclose(f);
}

/* loss and gradient (added into grad, which the caller zeroes) of one minibatch:
 * theta (P), x (N, d_in) rows idx[0..B-1], y (N, d_out) floats (mse) or (N) int64 labels (ce) */
static double loss_grad(const Case *c, const double *theta, const double *x, const void *y,
                        const int64_t *idx, int B, double *grad) {
    static double a[MAXL + 1][MAXB][MAXW], dz[MAXB][MAXW], da[MAXB][MAXW];
    int L = c->L, relu = !strcmp(c->act, "relu");
    long off[MAXL];
    for (long l = 0, o = 0; l < L; l++) { off[l] = o; o += (long)c->sizes[l + 1] * (c->sizes[l] + 1); }
    for (int i = 0; i < B; i++)
        for (int j = 0; j < c->sizes[0]; j++) a[0][i][j] = x[idx[i] * c->sizes[0] + j];
    for (int l = 0; l < L; l++) {                       /* forward: a[l+1] = act(a[l] W^T + b) */
        int in = c->sizes[l], out = c->sizes[l + 1];
        const double *W = theta + off[l], *b = W + (long)out * in;
        for (int i = 0; i < B; i++)
            for (int o = 0; o < out; o++) {
                double z = b[o];
                for (int k = 0; k < in; k++) z += a[l][i][k] * W[o * in + k];
                a[l + 1][i][o] = l == L - 1 ? z : (relu ? (z > 0 ? z : 0) : tanh(z));
            }
    }
    int dout = c->sizes[L];
    double loss = 0;
    if (!strcmp(c->loss, "mse")) {                      /* mean over batch and outputs */
        const double *Y = y;
        for (int i = 0; i < B; i++)
            for (int o = 0; o < dout; o++) {
                double d = a[L][i][o] - Y[idx[i] * dout + o];
                loss += d * d;
                dz[i][o] = 2.0 * d / (B * dout);
            }
        loss /= B * dout;
    } else {                                            /* softmax cross-entropy, mean over the batch */
        const int64_t *Y = y;
        for (int i = 0; i < B; i++) {
            double mx = a[L][i][0], s = 0;
            for (int o = 1; o < dout; o++) mx = a[L][i][o] > mx ? a[L][i][o] : mx;
            for (int o = 0; o < dout; o++) s += exp(a[L][i][o] - mx);
            double lse = log(s);
            loss -= a[L][i][Y[idx[i]]] - mx - lse;
            for (int o = 0; o < dout; o++) dz[i][o] = (exp(a[L][i][o] - mx - lse) - (o == Y[idx[i]])) / B;
        }
        loss /= B;
    }
    for (int l = L - 1; l >= 0; l--) {                  /* backward: dW = dz^T a, db = sum dz, dz <- (dz W) act' */
        int in = c->sizes[l], out = c->sizes[l + 1];
        const double *W = theta + off[l];
        double *dW = grad + off[l], *db = dW + (long)out * in;
        for (int o = 0; o < out; o++)
            for (int i = 0; i < B; i++) {
                db[o] += dz[i][o];
                for (int k = 0; k < in; k++) dW[o * in + k] += dz[i][o] * a[l][i][k];
            }
        if (l == 0) break;
        for (int i = 0; i < B; i++)
            for (int k = 0; k < in; k++) {
                double s = 0;
                for (int o = 0; o < out; o++) s += dz[i][o] * W[o * in + k];
                da[i][k] = s * (relu ? (a[l][i][k] > 0) : 1 - a[l][i][k] * a[l][i][k]);
            }
        for (int i = 0; i < B; i++)
            for (int k = 0; k < in; k++) dz[i][k] = da[i][k];
    }
    return loss;
}

static void run_case(const Case *c, const char *results) {
    Array th0 = load(c->name, "theta0"), X = load(c->name, "X"), Y = load(c->name, "Y"),
          plans = load(c->name, "plans"), eps = load(c->name, "eps");
    long P = th0.n, T = X.dims[0], n = X.dims[1], N = X.dims[2], k = plans.dims[2], B = plans.dims[3];
    long dx = N * c->sizes[0], dy = !strcmp(c->loss, "mse") ? N * c->sizes[c->L] : N;   /* per task */
    const double *x = X.data, *e = eps.data;
    const char *y = Y.data;
    const int64_t *plan = plans.data;
    double *theta = malloc(P * 8), *phi = malloc(P * 8), *sum = malloc(P * 8), *g = malloc(P * 8);
    char dir[1024], key[32];
    snprintf(dir, sizeof dir, "%s/%s", results, c->name);
    mkdir(dir, 0755);

    memset(g, 0, P * 8);                                /* loss and gradient at θ0, first minibatch */
    double loss = loss_grad(c, th0.data, x, y, plan, B, g);
    save_npy(dir, "loss", &loss, 0, NULL);
    save_npy(dir, "grad", g, 1, &P);

    memcpy(theta, th0.data, P * 8);
    for (long t = 0; t < T; t++) {                      /* outer iterations */
        memset(sum, 0, P * 8);
        for (long i = 0; i < n; i++) {                  /* tasks: k SGD steps from θ */
            memcpy(phi, theta, P * 8);
            for (long s = 0; s < k; s++) {
                memset(g, 0, P * 8);
                loss_grad(c, phi, x + (t * n + i) * dx, y + (t * n + i) * dy * 8, plan + ((t * n + i) * k + s) * B,
                          B, g);
                for (long p = 0; p < P; p++) phi[p] -= c->lr * g[p];
                if (t == 0 && i == 0) {
                    snprintf(key, sizeof key, "phi_%ld", s + 1);
                    save_npy(dir, key, phi, 1, &P);
                }
            }
            for (long p = 0; p < P; p++) sum[p] += phi[p];
        }
        for (long p = 0; p < P; p++) theta[p] += e[t] * (sum[p] / n - theta[p]);   /* θ + ε(mean φ − θ) */
        if (t + 1 == 1 || t + 1 == 10 || t + 1 == 100) {
            snprintf(key, sizeof key, "theta_%ld", t + 1);
            save_npy(dir, key, theta, 1, &P);
        }
    }
    free(theta); free(phi); free(sum); free(g);
    free(th0.data); free(X.data); free(Y.data); free(plans.data); free(eps.data);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: reptile_sgd SUITE_DIR RESULTS_DIR\n");
        return 2;
    }
    suite_dir = argv[1];
    mkdir(argv[2], 0755);
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/index.txt", suite_dir);
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open", path);
    int done = 0;
    while (fgets(line, sizeof line, f)) {
        Case c = {0};
        int off = 0;
        if (strncmp(line, "case ", 5) || sscanf(line, "case %127s %d%n", c.name, &c.L, &off) != 2) continue;
        if (c.L > MAXL) die("too many layers in", c.name);
        char *p = line + off;
        for (int l = 0; l <= c.L; l++) {
            int used;
            sscanf(p, "%d%n", &c.sizes[l], &used);
            p += used;
            if (c.sizes[l] > MAXW) die("layer too wide in", c.name);
        }
        sscanf(p, "%7s %7s %15s %lf", c.act, c.loss, c.opt, &c.lr);
        if (strcmp(c.opt, "sgd")) continue;             /* this port implements the SGD inner loop only */
        long pos = ftell(f);
        run_case(&c, argv[2]);
        fseek(f, pos, SEEK_SET);
        done++;
    }
    fclose(f);
    printf("reptile_sgd: wrote results of %d cases to %s\n", done, argv[2]);
    return 0;
}
