// A minimal C# web service with System.Net.HttpListener (no ASP.NET): POST /v1/chat/completions in OpenAI's shape,
// streamed as server-sent events, from the Ollama API's /api/chat stream. GET /healthz answers {"status":"ok"}.
// Build: mcs -r:System.Net.Http.dll -r:System.Runtime.Serialization.dll -out:service.exe Service.cs Ollama.cs
// Run:   mono service.exe 5000 http://127.0.0.1:11434 smollm2:135m
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Http;
using System.Text;
using System.Threading.Tasks;

static class Service {
    static readonly HttpClient Upstream = new HttpClient { Timeout = TimeSpan.FromMinutes(5) };
    static string ollama, model;

    static int Main(string[] args) {
        if (args.Length < 3) {
            Console.Error.WriteLine("usage: mono service.exe PORT OLLAMA_URL MODEL");
            return 2;
        }
        ollama = args[1].TrimEnd('/');
        model = args[2];
        var listener = new HttpListener();
        listener.Prefixes.Add("http://127.0.0.1:" + args[0] + "/");
        listener.Start();
        Console.WriteLine("listening on http://127.0.0.1:" + args[0] + "/, model " + model);
        while (true) {
            HttpListenerContext context = listener.GetContext();
            Task.Run(() => Handle(context));  // each request on the thread pool: the loop accepts the next one
        }
    }

    static async Task Handle(HttpListenerContext context) {
        var response = context.Response;
        try {
            string path = context.Request.Url.AbsolutePath;
            if (context.Request.HttpMethod == "GET" && path == "/healthz") {
                await Send(response, 200, "{\"status\":\"ok\"}");
            } else if (context.Request.HttpMethod == "POST" && path == "/v1/chat/completions") {
                await Chat(context);
            } else {
                await Send(response, 404, "{\"error\":{\"message\":\"no route " + path + "\"}}");
            }
        } catch (Exception e) {
            Console.Error.WriteLine("request failed: " + e.Message);
        } finally {
            response.Close();
        }
    }

    static async Task Send(HttpListenerResponse response, int status, string json) {
        byte[] bytes = Encoding.UTF8.GetBytes(json);
        response.StatusCode = status;
        response.ContentType = "application/json";
        response.ContentLength64 = bytes.Length;
        await response.OutputStream.WriteAsync(bytes, 0, bytes.Length);
    }

    static async Task Chat(HttpListenerContext context) {
        OpenAIRequest body;
        try {
            using (var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8))
                body = Json.Read<OpenAIRequest>(await reader.ReadToEndAsync());
        } catch (Exception) {
            await Send(context.Response, 400, "{\"error\":{\"message\":\"The body is not valid JSON.\"}}");
            return;
        }
        if (body.Messages == null || body.Messages.Count == 0) {
            await Send(context.Response, 400, "{\"error\":{\"message\":\"messages must not be empty\",\"param\":\"messages\"}}");
            return;
        }
        var upstream = new ChatRequest {
            Model = model, Messages = body.Messages, Stream = true,
            Options = new Options { Temperature = body.Temperature ?? 0, Seed = 0, NumPredict = body.MaxTokens ?? 128 },
        };
        var request = new HttpRequestMessage(HttpMethod.Post, ollama + "/api/chat") {
            Content = new StringContent(Json.Write(upstream), Encoding.UTF8, "application/json") };
        using (var answer = await Upstream.SendAsync(request, HttpCompletionOption.ResponseHeadersRead)) {
            if (!answer.IsSuccessStatusCode) {
                await Send(context.Response, 502, "{\"error\":{\"message\":\"upstream answered " + (int)answer.StatusCode + "\"}}");
                return;
            }
            var response = context.Response;
            response.StatusCode = 200;
            response.ContentType = body.Stream ? "text/event-stream" : "application/json";
            response.SendChunked = true;
            string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
            var text = new StringBuilder();
            string finish = "stop";
            using (var reader = new StreamReader(await answer.Content.ReadAsStreamAsync()))
            using (var output = new StreamWriter(response.OutputStream, new UTF8Encoding(false))) {
                string line;
                while ((line = await reader.ReadLineAsync()) != null) {
                    if (line.Length == 0) continue;
                    var part = Json.Read<ChatPart>(line);
                    string piece = part.Message?.Content ?? "";
                    text.Append(piece);
                    if (body.Stream && (piece.Length > 0 || part.Done)) {
                        var delta = part.Done ? new Message() : new Message { Content = piece };
                        if (part.Done && part.DoneReason == "length") finish = "length";
                        string reason = part.Done ? finish : null;
                        await output.WriteAsync("data: " + Json.Write(Chunk(id, "chat.completion.chunk", delta, null, reason)) + "\n\n");
                        await output.FlushAsync();  // each event leaves at once: that is what makes it a stream
                    }
                    if (part.Done) {
                        if (part.DoneReason == "length") finish = "length";
                        break;
                    }
                }
                if (body.Stream) {
                    await output.WriteAsync("data: [DONE]\n\n");
                } else {
                    var message = new Message { Role = "assistant", Content = text.ToString() };
                    await output.WriteAsync(Json.Write(Chunk(id, "chat.completion", null, message, finish)));
                }
            }
        }
    }

    static Completion Chunk(string id, string kind, Message delta, Message message, string reason) {
        return new Completion {
            Id = id, Object = kind, Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds(), Model = model,
            Choices = new List<Choice> { new Choice { Index = 0, Delta = delta, Message = message, FinishReason = reason } },
        };
    }
}
