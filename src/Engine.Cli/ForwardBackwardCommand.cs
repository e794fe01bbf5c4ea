using System.CommandLine;

namespace Engine.Cli;

/// <summary><c>engine forward-backward</c>: the parity harness (logits, loss and every gradient of a HF model).</summary>
internal static class ForwardBackwardCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "directory with config.json and model.safetensors", Required = true };
        var tokens = new Option<string>("--tokens") { Description = "JSON file {\"input_ids\": [[...], ...]}", Required = true };
        var output = new Option<string>("--out") { Description = "safetensors file to write", Required = true };
        var device = new Option<string?>("--device") { Description = "cpu, opencl[:N], cuda[:N] or auto" };
        var command = new Command("forward-backward", "Next-token loss, logits and gradients of a Hugging Face checkpoint, written as safetensors.")
        {
            model, tokens, output, device,
        };
        command.SetAction(r => CommandLine.Guard(() =>
            Engine.Tools.ForwardBackward.Run(r.GetValue(model)!, r.GetValue(tokens)!, r.GetValue(output)!, r.GetValue(device))));
        return command;
    }
}
