/* Stress test of the C thread pool (csrc/fusedact.c), built and run under ThreadSanitizer by
 * tools/check_threads.sh. Three submitting threads call fa_elementwise_f32 (a pool job above
 * 65,536 elements) with 1-4 threads each, sometimes after an idle pause so that the workers
 * are asleep or late, and compare every result with the single-threaded one. A data race in
 * the job hand-off (a worker reading a job's fields outside it, a caller returning while a
 * worker still writes) is reported by TSan; a wrong element, by the comparison. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fusedact.h"

#define N 200003 /* odd: the last chunk is a partial one */
#define CALLS 300

static float x[N], want[N];
static const double params[4] = {0.01, 0, 0, 0};

static void *submitter(void *arg)
{
    int id = (int)(intptr_t)arg;
    float *y = malloc(N * sizeof(float));
    unsigned seed = 12345u + (unsigned)id;
    long bad = 0;
    for (int call = 0; call < CALLS; call++) {
        seed = seed * 1103515245u + 12345u;
        int threads = 1 + (int)((seed >> 16) % 4);
        if ((seed >> 8) % 8 == 0) { /* idle long enough for the workers to sleep */
            struct timespec pause = {0, 300000};
            nanosleep(&pause, NULL);
        }
        memset(y, 0xFF, N * sizeof(float));
        fa_elementwise_f32(0 /* sigmoid */, 0, x, NULL, y, NULL, N, params, threads);
        bad += memcmp(y, want, N * sizeof(float)) != 0;
    }
    free(y);
    return (void *)bad;
}

int main(void)
{
    for (int i = 0; i < N; i++)
        x[i] = (float)((i % 2001) - 1000) * 0.01f;
    fa_elementwise_f32(0, 0, x, NULL, want, NULL, N, params, 1);
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, submitter, (void *)(intptr_t)i);
    long bad = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (long)r;
    }
    printf("pool stress: %d calls, %ld wrong results\n", 3 * CALLS, bad);
    return bad != 0;
}
