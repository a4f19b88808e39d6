// Greedy decoding with llama.cpp's C API: load a GGUF, tokenize a prompt, decode it, then pick the most likely
// token step by step. Prints each piece as it comes, tokens per second, and a JSON result line at the end.
// Build: cmake -S . -B build -DLLAMA_DIR=<llama.cpp build> && cmake --build build
// Run:   build/llama-greedy -m model.gguf -p "The capital of France is" -n 16
#include "llama.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef PICK_BY_HAND
#include "pick.hpp"  // the exercise: llama_token pick_greedy(const float * logits, int n_vocab)
#endif

static std::string json_string(const std::string & text) {
    std::string out = "\"";
    for (unsigned char c : text) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) { char buf[8]; snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
                else out += static_cast<char>(c);
        }
    }
    return out + "\"";
}

static std::string json_ids(const std::vector<llama_token> & ids) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); i++) out += (i ? "," : "") + std::to_string(ids[i]);
    return out + "]";
}

static std::string piece_of(const llama_vocab * vocab, llama_token token) {
    char buf[256];
    int n = llama_token_to_piece(vocab, token, buf, sizeof buf, 0, true);
    return n < 0 ? std::string() : std::string(buf, n);
}

int main(int argc, char ** argv) {
    std::string model_path, prompt = "The capital of France is";
    int n_predict = 16, n_threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) model_path = argv[i + 1];
        else if (!strcmp(argv[i], "-p")) prompt = argv[i + 1];
        else if (!strcmp(argv[i], "-n")) n_predict = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) n_threads = atoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (model_path.empty() || n_predict < 1) {
        fprintf(stderr, "usage: %s -m model.gguf [-p prompt] [-n tokens] [-t threads]\n", argv[0]);
        return 2;
    }
    llama_log_set([](enum ggml_log_level level, const char * text, void *) {
        if (level >= GGML_LOG_LEVEL_ERROR) fputs(text, stderr);  // only errors: the output stays readable
    }, nullptr);
    llama_backend_init();

    llama_model_params mparams = llama_model_default_params();
    mparams.progress_callback = [](float, void *) { return true; };  // no progress dots
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mparams);
    if (!model) { fprintf(stderr, "error: cannot load the model %s\n", model_path.c_str()); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);

    // Tokenize: a first call with no room returns minus the number of tokens needed.
    int n_prompt = -llama_tokenize(vocab, prompt.c_str(), prompt.size(), nullptr, 0, true, true);
    std::vector<llama_token> prompt_ids(n_prompt);
    llama_tokenize(vocab, prompt.c_str(), prompt.size(), prompt_ids.data(), n_prompt, true, true);

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = n_prompt + n_predict + 8;
    cparams.n_batch = n_prompt;
    if (n_threads > 0) { cparams.n_threads = n_threads; cparams.n_threads_batch = n_threads; }
    llama_context * ctx = llama_init_from_model(model, cparams);
    if (!ctx) { fprintf(stderr, "error: cannot create the context\n"); return 1; }

    llama_sampler * sampler = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(sampler, llama_sampler_init_greedy());

    printf("%s", prompt.c_str());
    fflush(stdout);
    std::vector<llama_token> generated;
    std::string text;
    llama_batch batch = llama_batch_get_one(prompt_ids.data(), prompt_ids.size());  // the prompt, in one batch
    llama_token token;
    auto t0 = std::chrono::steady_clock::now(), t_first = t0;
    for (int i = 0; i < n_predict; i++) {
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "\nerror: llama_decode failed\n"); return 1; }
        if (i == 0) t_first = std::chrono::steady_clock::now();
#ifdef PICK_BY_HAND
        token = pick_greedy(llama_get_logits_ith(ctx, -1), llama_vocab_n_tokens(vocab));
#else
        token = llama_sampler_sample(sampler, ctx, -1);
#endif
        if (llama_vocab_is_eog(vocab, token)) break;
        generated.push_back(token);
        std::string piece = piece_of(vocab, token);
        text += piece;
        printf("%s", piece.c_str());
        fflush(stdout);
        batch = llama_batch_get_one(&token, 1);  // the next step reads only the new token
    }
    auto t_end = std::chrono::steady_clock::now();
    double prefill_s = std::chrono::duration<double>(t_first - t0).count();
    double decode_s = std::chrono::duration<double>(t_end - t_first).count();
    // decode_s covers the decode calls after the prompt's: one per generated token but the last
    double decode_tok_s = generated.size() > 1 ? (generated.size() - 1) / decode_s : 0.0;
    printf("\n\n%d prompt tokens in %.3f s (%.0f tokens/s), %zu generated in %.3f s (%.1f tokens/s)\n",
           n_prompt, prefill_s, n_prompt / prefill_s, generated.size(), decode_s, decode_tok_s);
    printf("{\"prompt_tokens\": %s, \"tokens\": %s, \"text\": %s, \"prefill_tok_s\": %.1f, \"decode_tok_s\": %.1f, "
           "\"threads\": %d}\n", json_ids(prompt_ids).c_str(), json_ids(generated).c_str(), json_string(text).c_str(),
           n_prompt / prefill_s, decode_tok_s, llama_n_threads(ctx));

    llama_sampler_free(sampler);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
