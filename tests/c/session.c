/*
 * A C client of libzo's session and scheduler levels, driven by tests/ffi_session.rs.
 *
 *   session   MODEL DATA CONFIG OUT   train every step with zo_session_step
 *   scheduler MODEL DATA CONFIG OUT   the same through zo_step_begin / zo_session_score /
 *                                     zo_step_end, with zo's own scoring
 *   resume    MODEL DATA CONFIG OUT   half the steps, save, free; a fresh session resumes
 *                                     from the checkpoint and does the rest
 *   threads   MODEL DATA CONFIG OUT   two sessions trained at once on two threads
 *   lora      MODEL DATA CONFIG       a mezo-lora run whose LoRA factors the caller also
 *                                     keeps, updated with zo_apply_update: equal to zo's
 *   errors    MODEL DATA CONFIG       bad input: each call gets its named status and a message
 *
 * The training modes evaluate dev before the first and after the last step (as zo-run train
 * with --eval-every 0 does), write OUT/checkpoint.json and OUT/g.txt (every step's g, one
 * hex float per line), and export the last state to OUT/export.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define MAX_Q 64

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

struct run {
    const char *model, *data, *config, *out;
};

static zo_session *open_session(const struct run *r) {
    char *config = read_file(r->config);
    zo_session_params p = zo_session_default_params();
    p.model_path = r->model;
    p.config_json = config;
    p.device = ZO_DEVICE_CPU;
    zo_session *s = NULL;
    CHECK(zo_session_open(&p, &s));
    free(config);
    CHECK(zo_session_load_task(s, r->data));
    return s;
}

static uint64_t total_steps(zo_session *s) {
    /* The config's step count, read back from the session's own JSON. */
    size_t need = 0;
    EXPECT_STATUS(ZO_ERR_BUFFER_TOO_SMALL, zo_session_config_json(s, NULL, 0, &need));
    char *json = malloc(need);
    CHECK(zo_session_config_json(s, json, need, NULL));
    const char *at = strstr(json, "\"steps\":");
    if (!at) {
        fprintf(stderr, "no steps in %s\n", json);
        exit(1);
    }
    uint64_t steps = strtoull(at + 8, NULL, 10);
    free(json);
    return steps;
}

static void write_g(FILE *g, const zo_step_result *r) {
    for (size_t d = 0; d < r->n_directions; d++) {
        fprintf(g, "%a\n", (double)r->g[d]);
    }
}

/* One step through the scheduler level, scored by zo's own forward. */
static void scheduler_step(zo_session *s, zo_step_result *res) {
    zo_plan plan = zo_plan_default();
    CHECK(zo_step_begin(s, &plan));
    if (plan.n_groups != plan.batch * plan.n_variants || plan.cu_seqlens[0] != 0 ||
        plan.cu_seqlens[plan.n_seqs] != plan.n_tokens) {
        fprintf(stderr, "inconsistent plan\n");
        exit(1);
    }
    float *lp = malloc(plan.n_queries * sizeof(float));
    CHECK(zo_session_score(s, lp, plan.n_queries));
    zo_step_scores sc = zo_step_scores_default();
    sc.query_logprobs = lp;
    sc.n_query_logprobs = plan.n_queries;
    CHECK(zo_step_end(s, &sc, res));
    free(lp);
}

static void train(zo_session *s, uint64_t until, int scheduler, FILE *g) {
    double lp[MAX_Q], lm[MAX_Q];
    float gs[MAX_Q], coefs[MAX_Q];
    uint64_t seeds[MAX_Q];
    zo_step_result res = zo_step_result_default();
    res.capacity = MAX_Q;
    res.loss_plus = lp;
    res.loss_minus = lm;
    res.g = gs;
    res.coefs = coefs;
    res.seeds = seeds;
    uint64_t done = 0;
    CHECK(zo_session_steps_done(s, &done));
    for (; done < until; done++) {
        if (scheduler) {
            scheduler_step(s, &res);
        } else {
            CHECK(zo_session_step(s, &res));
        }
        if (res.step != done || res.n_directions == 0 || res.skipped) {
            fprintf(stderr, "step %llu: unexpected result\n", (unsigned long long)done);
            exit(1);
        }
        write_g(g, &res);
    }
}

static void finish(zo_session *s, const struct run *r) {
    zo_eval_result ev;
    CHECK(zo_session_evaluate(s, ZO_SPLIT_DEV, &ev));
    printf("dev accuracy %.4f loss %.4f over %zu examples\n", ev.accuracy, ev.mean_loss,
           ev.n_examples);
    char *ck = join(r->out, "checkpoint.json");
    char *ex = join(r->out, "export");
    CHECK(zo_session_save(s, ck));
    CHECK(zo_session_export(s, ex, ZO_EXPORT_LAST, ZO_DTYPE_F32));
    free(ck);
    free(ex);
}

static void run_training(const struct run *r, const char *mode) {
    char *gpath = join(r->out, "g.txt");
    FILE *g = fopen(gpath, "w");
    zo_session *s = open_session(r);
    uint64_t steps = total_steps(s);
    zo_eval_result ev;
    CHECK(zo_session_evaluate(s, ZO_SPLIT_DEV, &ev));
    if (strcmp(mode, "resume") == 0) {
        train(s, steps / 2, 0, g);
        char *ck = join(r->out, "half.json");
        CHECK(zo_session_save(s, ck));
        zo_session_free(s);
        s = open_session(r);
        CHECK(zo_session_resume(s, ck));
        free(ck);
    }
    train(s, steps, strcmp(mode, "scheduler") == 0, g);
    finish(s, r);
    zo_session_free(s);
    fclose(g);
    free(gpath);
}

struct job {
    struct run run;
    uint64_t steps;
    float g[256];
    size_t n;
};

static void *thread_main(void *arg) {
    struct job *j = arg;
    zo_session *s = open_session(&j->run);
    zo_step_result res = zo_step_result_default();
    float gd[MAX_Q];
    res.capacity = MAX_Q;
    res.g = gd;
    for (uint64_t i = 0; i < j->steps; i++) {
        CHECK(zo_session_step(s, &res));
        for (size_t d = 0; d < res.n_directions && j->n < 256; d++) {
            j->g[j->n++] = gd[d];
        }
    }
    zo_session_free(s);
    return NULL;
}

/* Two sessions of one config trained at once give the g's of each other, and of one
 * session trained alone (the run's g.txt written by an earlier mode). */
static void run_threads(const struct run *r) {
    zo_session *probe = open_session(r);
    uint64_t steps = total_steps(probe);
    zo_session_free(probe);
    struct job jobs[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].run = *r;
        jobs[i].steps = steps;
        pthread_create(&t[i], NULL, thread_main, &jobs[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
    char *gpath = join(r->out, "g.txt");
    FILE *g = fopen(gpath, "w");
    for (size_t i = 0; i < jobs[0].n; i++) {
        if (memcmp(&jobs[0].g[i], &jobs[1].g[i], sizeof(float)) != 0) {
            fprintf(stderr, "step %zu: the threads' g differ\n", i);
            exit(1);
        }
        fprintf(g, "%a\n", (double)jobs[0].g[i]);
    }
    fclose(g);
    free(gpath);
}

/* The caller keeps its own copy of every LoRA factor and moves it with zo_apply_update
 * after each step; it stays equal to the factors zo trains, bit for bit. */
static void run_lora(const struct run *r) {
    zo_session *s = open_session(r);
    size_t n = 0;
    CHECK(zo_session_adapter_sites(s, NULL, 0, &n));
    zo_adapter_site *sites = calloc(n, sizeof *sites);
    CHECK(zo_session_adapter_sites(s, sites, n, &n));
    float **a = calloc(n, sizeof *a), **b = calloc(n, sizeof *b);
    for (size_t i = 0; i < n; i++) {
        size_t na = sites[i].rank * sites[i].in_dim, nb = sites[i].out_dim * sites[i].rank;
        a[i] = malloc(na * sizeof(float));
        b[i] = malloc(nb * sizeof(float));
        CHECK(zo_session_lora_factors(s, NULL, i, a[i], na, b[i], nb));
    }
    uint64_t steps = total_steps(s);
    float coefs[MAX_Q];
    uint64_t seeds[MAX_Q];
    for (uint64_t step = 0; step < steps; step++) {
        zo_step_result res = zo_step_result_default();
        res.capacity = MAX_Q;
        res.coefs = coefs;
        res.seeds = seeds;
        scheduler_step(s, &res);
        for (size_t i = 0; i < n; i++) {
            size_t na = sites[i].rank * sites[i].in_dim, nb = sites[i].out_dim * sites[i].rank;
            float *want_a = malloc(na * sizeof(float)), *want_b = malloc(nb * sizeof(float));
            CHECK(zo_session_lora_factors(s, NULL, i, want_a, na, want_b, nb));
            for (int f = 0; f < 2; f++) {
                zo_update_params u = zo_update_default_params();
                u.data = f == 0 ? a[i] : b[i];
                u.n = f == 0 ? na : nb;
                u.tensor_id = sites[i].tensor_id;
                u.role = f == 0 ? ZO_ROLE_LORA_A : ZO_ROLE_LORA_B;
                u.seeds = seeds;
                u.coefs = coefs;
                u.n_directions = res.n_directions;
                u.lr = res.lr;
                CHECK(zo_apply_update(&u));
            }
            if (memcmp(a[i], want_a, na * sizeof(float)) != 0 ||
                memcmp(b[i], want_b, nb * sizeof(float)) != 0) {
                fprintf(stderr, "step %llu: %s: the caller's factors differ from zo's\n",
                        (unsigned long long)step, sites[i].hf_module);
                exit(1);
            }
            free(want_a);
            free(want_b);
        }
    }
    printf("lora: %zu sites, %llu steps, caller's factors equal zo's\n", n,
           (unsigned long long)steps);
    for (size_t i = 0; i < n; i++) {
        free(a[i]);
        free(b[i]);
    }
    free(a);
    free(b);
    free(sites);
    zo_session_free(s);
}

static void run_errors(const struct run *r) {
    zo_session_params p = zo_session_default_params();
    zo_session *s = NULL;

    EXPECT_STATUS(ZO_ERR_NULL, zo_session_open(NULL, &s));
    EXPECT_STATUS(ZO_ERR_NULL, zo_session_open(&p, &s)); /* no model_path */
    p.model_path = "/nonexistent/zo-model";
    EXPECT_STATUS(ZO_ERR_IO, zo_session_open(&p, &s));
    if (s != NULL) {
        fprintf(stderr, "a failed open left a handle\n");
        exit(1);
    }
    zo_session_params stale = zo_session_default_params();
    stale.struct_size -= sizeof(void *);
    stale.model_path = r->model;
    EXPECT_STATUS(ZO_ERR_STRUCT_SIZE, zo_session_open(&stale, &s));
    p.model_path = r->model;
    p.config_json = "{\"steps\": 3}";
    EXPECT_STATUS(ZO_ERR_CONFIG, zo_session_open(&p, &s));
    p.config_json = NULL;
    p.device = 42;
    EXPECT_STATUS(ZO_ERR_ARGUMENT, zo_session_open(&p, &s));

    zo_step_result res = zo_step_result_default();
    zo_plan plan = zo_plan_default();
    zo_eval_result ev;
    EXPECT_STATUS(ZO_ERR_NULL, zo_session_step(NULL, &res));
    EXPECT_STATUS(ZO_ERR_NULL, zo_step_begin(NULL, &plan));
    EXPECT_STATUS(ZO_ERR_NULL, zo_session_evaluate(NULL, ZO_SPLIT_DEV, &ev));
    /* A handle of another kind (here: a pointer to something that is not a session). */
    uint64_t not_a_session[8] = {0};
    EXPECT_STATUS(ZO_ERR_ARGUMENT, zo_session_step((zo_session *)not_a_session, &res));

    s = open_session(r);
    EXPECT_STATUS(ZO_ERR_ARGUMENT, zo_session_evaluate(s, 7, &ev));
    EXPECT_STATUS(ZO_ERR_IO, zo_session_load_task(s, "/nonexistent/zo-data"));

    /* Examples that do not fit the model. */
    uint32_t prompt[2] = {1, 2}, cands[2] = {4, 5000000};
    size_t offsets[3] = {0, 1, 2};
    zo_example bad = {prompt, 2, cands, offsets, 2, 0};
    EXPECT_STATUS(ZO_ERR_DATA, zo_session_add_examples(s, ZO_SPLIT_DEV, &bad, 1));
    cands[1] = 5;
    bad.gold = 2;
    EXPECT_STATUS(ZO_ERR_DATA, zo_session_add_examples(s, ZO_SPLIT_DEV, &bad, 1));
    bad.gold = 0;
    size_t backwards[3] = {0, 2, 1};
    bad.candidate_offsets = backwards;
    EXPECT_STATUS(ZO_ERR_ARGUMENT, zo_session_add_examples(s, ZO_SPLIT_DEV, &bad, 1));

    /* The scheduler's calls out of order, then a step that recovers from bad scores. */
    zo_step_scores sc = zo_step_scores_default();
    EXPECT_STATUS(ZO_ERR_STATE, zo_step_end(s, &sc, &res));
    EXPECT_STATUS(ZO_ERR_STATE, zo_step_skip(s, NULL));
    CHECK(zo_step_begin(s, &plan));
    EXPECT_STATUS(ZO_ERR_STATE, zo_step_begin(s, &plan));
    EXPECT_STATUS(ZO_ERR_STATE, zo_session_step(s, &res));
    EXPECT_STATUS(ZO_ERR_STATE, zo_session_load_task(s, r->data));
    float *lp = malloc(plan.n_queries * sizeof(float));
    EXPECT_STATUS(ZO_ERR_BUFFER_TOO_SMALL, zo_session_score(s, lp, plan.n_queries - 1));
    CHECK(zo_session_score(s, lp, plan.n_queries));
    EXPECT_STATUS(ZO_ERR_ARGUMENT, zo_step_end(s, &sc, &res)); /* no scores */
    sc.query_logprobs = lp;
    sc.n_query_logprobs = plan.n_queries - 1;
    EXPECT_STATUS(ZO_ERR_SHAPE, zo_step_end(s, &sc, &res));
    sc.n_query_logprobs = plan.n_queries;
    float keep = lp[0];
    lp[0] = NAN;
    EXPECT_STATUS(ZO_ERR_NOT_FINITE, zo_step_end(s, &sc, &res));
    lp[0] = keep;
    zo_step_scores stale_sc = sc;
    stale_sc.struct_size = 8;
    EXPECT_STATUS(ZO_ERR_STRUCT_SIZE, zo_step_end(s, &stale_sc, &res));
    double small[1];
    res.capacity = 0;
    res.loss_plus = small;
    EXPECT_STATUS(ZO_ERR_BUFFER_TOO_SMALL, zo_step_end(s, &sc, &res));
    res = zo_step_result_default();
    CHECK(zo_step_end(s, &sc, &res)); /* the step was still begun: it ends now */
    EXPECT_STATUS(ZO_ERR_STATE, zo_step_end(s, &sc, &res));
    free(lp);
    uint64_t done = 0;
    CHECK(zo_session_steps_done(s, &done));
    if (done != 1) {
        fprintf(stderr, "expected one step done, got %llu\n", (unsigned long long)done);
        exit(1);
    }
    EXPECT_STATUS(ZO_ERR_STATE, zo_session_resume(s, "/nonexistent/ck.json"));
    EXPECT_STATUS(ZO_ERR_IO, zo_session_save(s, "/nonexistent/dir/ck.json"));
    EXPECT_STATUS(ZO_ERR_ARGUMENT, zo_session_export(s, "/tmp/unused", 9, ZO_DTYPE_F32));
    zo_session_free(s);

    /* A resume from a file that is not a checkpoint. */
    s = open_session(r);
    EXPECT_STATUS(ZO_ERR_IO, zo_session_resume(s, "/nonexistent/ck.json"));
    EXPECT_STATUS(ZO_ERR_FORMAT, zo_session_resume(s, r->config));
    zo_session_free(s);
    zo_session_free(NULL);

    EXPECT_STATUS(ZO_ERR_INTERNAL, zo_debug_panic());
    CHECK(zo_abi_version() == ZO_ABI_VERSION ? ZO_OK : ZO_ERR_INTERNAL);
    printf("errors: all refused as expected\n");
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODE MODEL DATA CONFIG [OUT]\n", argv[0]);
        return 2;
    }
    struct run r = {argv[2], argv[3], argv[4], argc > 5 ? argv[5] : NULL};
    const char *mode = argv[1];
    if (strcmp(mode, "errors") == 0) {
        run_errors(&r);
    } else if (strcmp(mode, "lora") == 0) {
        run_lora(&r);
    } else if (strcmp(mode, "threads") == 0) {
        run_threads(&r);
    } else {
        run_training(&r, mode);
    }
    return 0;
}
