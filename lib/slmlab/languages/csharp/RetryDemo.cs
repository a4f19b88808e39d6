// Calls /api/chat through Retry.SendAsync (Retry.cs: the exercise) and prints the outcome as a JSON line.
// Build: mcs -r:System.Net.Http.dll -r:System.Runtime.Serialization.dll -out:retry.exe RetryDemo.cs Retry.cs Ollama.cs
// Run:   mono retry.exe URL MODEL MAX_ATTEMPTS BASE_DELAY_MS
using System;
using System.Collections.Generic;
using System.Net.Http;
using System.Runtime.Serialization;
using System.Text;

[DataContract] class RetryResult {
    [DataMember(Name = "status")] public int Status;
    [DataMember(Name = "answer")] public string Answer;
}

static class RetryDemo {
    static int Main(string[] args) {
        string url = args[0].TrimEnd('/'), model = args[1];
        int maxAttempts = int.Parse(args[2]);
        var baseDelay = TimeSpan.FromMilliseconds(double.Parse(args[3]));
        var body = Json.Write(new ChatRequest {
            Model = model, Stream = false,
            Messages = new List<Message> { new Message { Role = "user", Content = "Say hello." } },
            Options = new Options { Temperature = 0, Seed = 0, NumPredict = 8 },
        });
        using (var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) }) {
            // a request can be sent only once: each attempt needs a new one
            Func<HttpRequestMessage> makeRequest = () => new HttpRequestMessage(HttpMethod.Post, url + "/api/chat") {
                Content = new StringContent(body, Encoding.UTF8, "application/json") };
            HttpResponseMessage response = Retry.SendAsync(http, makeRequest, maxAttempts, baseDelay).GetAwaiter().GetResult();
            string text = response.Content.ReadAsStringAsync().GetAwaiter().GetResult();
            var result = new RetryResult { Status = (int)response.StatusCode };
            if (response.IsSuccessStatusCode) result.Answer = Json.Read<ChatPart>(text).Message.Content;
            Console.WriteLine("HTTP " + result.Status + ": " + (result.Answer ?? text));
            Console.WriteLine(Json.Write(result));
        }
        return 0;
    }
}
