/* The checks every C client in tests/c/ makes: a zo call that must succeed, a condition that
 * must hold, and a call that must be refused with a named status and a message. Each prints
 * where it failed and exits 1. */
#ifndef ZO_TEST_CHECK_H
#define ZO_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "zo.h"

#define CHECK(call)                                                                           \
    do {                                                                                      \
        zo_status s_ = (call);                                                                \
        if (s_ != ZO_OK) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s: %s\n", __FILE__, __LINE__, #call,                 \
                    zo_status_name(s_), zo_last_error());                                     \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define EXPECT(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fprintf(stderr, "\n");                                                            \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* A call that must fail with `want` and leave a message; prints it. */
#define EXPECT_STATUS(want, call)                                                             \
    do {                                                                                      \
        zo_status s_ = (call);                                                                \
        EXPECT(s_ == (want) && zo_last_error()[0] != '\0',                                    \
               "%s gave %s (\"%s\"), expected %s with a message", #call, zo_status_name(s_),  \
               zo_last_error(), #want);                                                       \
        printf("ok %-24s %s\n", #want, zo_last_error());                                      \
    } while (0)

#endif
