// Class names of a class-conditional model, as a checkpoint stores them (metadata
// "class_names": one name per line, class 0 first; models/checkpoint.h), and the lookup that
// ddx-sample --class and a per-class evaluation use to turn what the user typed into a label.
#ifndef DDX_CLASSES_H
#define DDX_CLASSES_H

#ifdef __cplusplus
extern "C" {
#endif

#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

// How many names `names` lists (NULL: 0).
int ddx_class_names_count(const char *names);
// Name k into buf (cut to n - 1 bytes); "" when names is NULL or lists fewer than k + 1.
void ddx_class_name(const char *names, int k, char *buf, size_t n);
// `arg` as a class of a model with num_classes classes: a number 0..num_classes-1, or a name
// from `names` (exact, else the one name equal ignoring case). Anything else: DDX_E_INPUT
// with one line naming `what` (the flag), the value and the classes there are.
ddx_status ddx_class_lookup(const char *names, int num_classes, const char *arg, const char *what, int32_t *out);

#ifdef __cplusplus
}
#endif

#endif
