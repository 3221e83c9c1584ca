/* load_hf.c — `--vocab` model loading for HF directories (tools/load_hf.h). */
#include "load_hf.h"

#include <stdio.h>
#include <sys/stat.h>

#include "common.h"

qn_model *qn_tool_load_model_vocab(const char *cmd, const char *path, const char *vocab) {
    if (!vocab) return qn_tool_load_model(cmd, path);
    struct stat sb;
    if (!path || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "quern %s: --vocab is for Hugging Face model directories (-m DIR)\n", cmd);
        return NULL;
    }
    qn_model *m = NULL;
    qn_error err = {0};
    if (qn_model_load_hf(path, vocab, &m, &err) != QN_OK) {
        fprintf(stderr, "quern %s: %s\n", cmd, err.msg);
        return NULL;
    }
    return m;
}
