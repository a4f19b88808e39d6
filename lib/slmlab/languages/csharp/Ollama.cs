// The JSON shapes of Ollama's /api/chat and OpenAI's chat completions as DataContract classes, and a small JSON
// helper over DataContractJsonSerializer (System.Runtime.Serialization: in .NET Framework, Mono and .NET alike).
using System.Collections.Generic;
using System.IO;
using System.Runtime.Serialization;
using System.Runtime.Serialization.Json;
using System.Text;

[DataContract] public class Message {
    [DataMember(Name = "role", EmitDefaultValue = false)] public string Role;  // left out when null
    [DataMember(Name = "content", EmitDefaultValue = false)] public string Content;
}

[DataContract] public class Options {
    [DataMember(Name = "temperature")] public double Temperature;
    [DataMember(Name = "seed")] public int Seed;
    [DataMember(Name = "num_predict")] public int NumPredict;
}

// POST /api/chat: the request, and each line of the answer (one JSON object per line when streaming)
[DataContract] public class ChatRequest {
    [DataMember(Name = "model")] public string Model;
    [DataMember(Name = "messages")] public List<Message> Messages;
    [DataMember(Name = "stream")] public bool Stream;
    [DataMember(Name = "options")] public Options Options;
}

[DataContract] public class ChatPart {
    [DataMember(Name = "message")] public Message Message;
    [DataMember(Name = "done")] public bool Done;
    [DataMember(Name = "done_reason")] public string DoneReason;
    [DataMember(Name = "prompt_eval_count")] public int PromptEvalCount;
    [DataMember(Name = "eval_count")] public int EvalCount;
    [DataMember(Name = "eval_duration")] public long EvalDuration;
    [DataMember(Name = "error")] public string Error;
}

// OpenAI's POST /v1/chat/completions, as far as the C# service reads and writes it
[DataContract] public class OpenAIRequest {
    [DataMember(Name = "messages")] public List<Message> Messages;
    [DataMember(Name = "max_tokens")] public int? MaxTokens;
    [DataMember(Name = "temperature")] public double? Temperature;
    [DataMember(Name = "stream")] public bool Stream;
}

[DataContract] public class Choice {
    [DataMember(Name = "index")] public int Index;
    [DataMember(Name = "delta", EmitDefaultValue = false)] public Message Delta;
    [DataMember(Name = "message", EmitDefaultValue = false)] public Message Message;
    [DataMember(Name = "finish_reason")] public string FinishReason;
}

[DataContract] public class Completion {
    [DataMember(Name = "id")] public string Id;
    [DataMember(Name = "object")] public string Object;
    [DataMember(Name = "created")] public long Created;
    [DataMember(Name = "model")] public string Model;
    [DataMember(Name = "choices")] public List<Choice> Choices;
}

public static class Json {
    public static string Write<T>(T value) {
        var serializer = new DataContractJsonSerializer(typeof(T));
        using (var stream = new MemoryStream()) {
            serializer.WriteObject(stream, value);
            return Encoding.UTF8.GetString(stream.ToArray());
        }
    }

    public static T Read<T>(string text) {
        var serializer = new DataContractJsonSerializer(typeof(T));
        using (var stream = new MemoryStream(Encoding.UTF8.GetBytes(text))) {
            return (T)serializer.ReadObject(stream);
        }
    }
}
