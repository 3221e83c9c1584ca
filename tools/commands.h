/* commands.h — one entry point per `quern` subcommand (tools/<name>.c). Each returns the process
 * exit code; argv[0] is the subcommand name. */
#ifndef QN_COMMANDS_H
#define QN_COMMANDS_H

int qn_cmd_run(int argc, char **argv);
int qn_cmd_perplexity(int argc, char **argv);
int qn_cmd_logits(int argc, char **argv);
int qn_cmd_inspect(int argc, char **argv);
int qn_cmd_serve(int argc, char **argv);
int qn_cmd_bench(int argc, char **argv);
int qn_cmd_bench_serve(int argc, char **argv); /* `quern bench serve` (tools/bench_serve.c) */
int qn_cmd_quantize(int argc, char **argv);
int qn_cmd_quantize_hf(int argc, char **argv);     /* HF_DIR OUT_DIR gptq|nf4 (tools/quantize_hf.c) */
int qn_quantize_is_hf_method(const char *s);       /* gptq, nf4, awq */
int qn_cmd_imatrix(int argc, char **argv);
int qn_cmd_synth(int argc, char **argv);
int qn_cmd_convert(int argc, char **argv);   /* tools/convert.c */
int qn_cmd_export_hf(int argc, char **argv); /* tools/convert.c */

void qn_tool_init_env(void);

#endif
