// A C# console client of the Ollama API: one whole answer, the same answer streamed (NDJSON: one JSON object per
// line), and an error. Build: mcs -r:System.Net.Http.dll -r:System.Runtime.Serialization.dll -out:client.exe
// Client.cs Ollama.cs    Run: mono client.exe http://127.0.0.1:11434 smollm2:135m 32 "Why is the sky blue?"
using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Http;
using System.Runtime.Serialization;
using System.Text;
using System.Threading.Tasks;

[DataContract] class ClientResult {
    [DataMember(Name = "answer")] public string Answer;
    [DataMember(Name = "pieces")] public List<string> Pieces = new List<string>();
    [DataMember(Name = "eval_count")] public int EvalCount;
    [DataMember(Name = "error_status")] public int ErrorStatus;
    [DataMember(Name = "error")] public string Error;
}

static class Client {
    static StringContent Body(string model, string question, int maxTokens, bool stream) {
        var request = new ChatRequest {
            Model = model, Stream = stream,
            Messages = new List<Message> { new Message { Role = "user", Content = question } },
            Options = new Options { Temperature = 0, Seed = 0, NumPredict = maxTokens },
        };
        return new StringContent(Json.Write(request), Encoding.UTF8, "application/json");
    }

    // mcs has no `async Main` (C# 7.1): Main waits for the async Run.
    static int Main(string[] args) {
        return Run(args).GetAwaiter().GetResult();
    }

    static async Task<int> Run(string[] args) {
        if (args.Length < 4) {
            Console.Error.WriteLine("usage: mono client.exe OLLAMA_URL MODEL MAX_TOKENS QUESTION");
            return 2;
        }
        string url = args[0].TrimEnd('/'), model = args[1], question = args[3];
        int maxTokens = int.Parse(args[2]);
        var result = new ClientResult();
        using (var http = new HttpClient { Timeout = TimeSpan.FromMinutes(5) }) {
            try {
                // 1. the whole answer at once
                var whole = await http.PostAsync(url + "/api/chat", Body(model, question, maxTokens, false));
                whole.EnsureSuccessStatusCode();
                var part = Json.Read<ChatPart>(await whole.Content.ReadAsStringAsync());
                result.Answer = part.Message.Content;
                result.EvalCount = part.EvalCount;
                Console.WriteLine("chat: " + result.Answer);
                Console.WriteLine("  " + part.EvalCount + " tokens, done_reason=" + part.DoneReason);

                // 2. streamed: read the body as it arrives, one JSON object per line
                Console.Write("\nstream: ");
                var request = new HttpRequestMessage(HttpMethod.Post, url + "/api/chat") {
                    Content = Body(model, question, maxTokens, true) };
                using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
                using (var reader = new StreamReader(await response.Content.ReadAsStreamAsync())) {
                    response.EnsureSuccessStatusCode();
                    string line;
                    while ((line = await reader.ReadLineAsync()) != null) {
                        if (line.Length == 0) continue;
                        var chunk = Json.Read<ChatPart>(line);
                        if (chunk.Error != null) throw new Exception("the server stopped: " + chunk.Error);
                        if (!string.IsNullOrEmpty(chunk.Message?.Content)) {
                            result.Pieces.Add(chunk.Message.Content);
                            Console.Write(chunk.Message.Content);
                        }
                        if (chunk.Done) break;
                    }
                }
                Console.WriteLine("\n  " + result.Pieces.Count + " pieces; the same text: " +
                                  (string.Concat(result.Pieces) == result.Answer));

                // 3. an error: the status code and Ollama's {"error": "..."} body
                var missing = await http.PostAsync(url + "/api/chat", Body("no-such-model:1b", question, 4, false));
                result.ErrorStatus = (int)missing.StatusCode;
                result.Error = Json.Read<ChatPart>(await missing.Content.ReadAsStringAsync()).Error;
                Console.WriteLine("\nerror: HTTP " + result.ErrorStatus + ": " + result.Error);
            } catch (HttpRequestException e) {
                Console.Error.WriteLine("error: cannot reach " + url + ": " + (e.InnerException?.Message ?? e.Message) +
                                        ". Is the server running?");
                return 1;
            }
        }
        Console.WriteLine(Json.Write(result));
        return 0;
    }
}
