// envelopd client over TCP with a bearer token, Java 17 standard library
// only. Run it as a single file:
//
//   ENVELOPD_URL=http://127.0.0.1:8443 ENVELOPD_TOKEN=... java Client.java encrypt TENANT IN OUT
//   java Client.java decrypt IN OUT
//   java Client.java datakey TENANT          (prints the JSON answer)
//
// The token is a [[clients]] rule's token. Plain HTTP is for a loopback
// listener only; elsewhere use an https URL (the JVM's trust store must
// hold the daemon's CA). Bodies are streamed from and to files; OUT is
// written as OUT.part and renamed only when the whole body arrived. Exit
// status 1 and one "envelopd_client:" line on any failure.

import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

public class Client {
    static final String BASE = System.getenv().getOrDefault("ENVELOPD_URL", "http://127.0.0.1:8443");
    static final String TOKEN = System.getenv().getOrDefault("ENVELOPD_TOKEN", "");
    static final HttpClient HTTP = HttpClient.newHttpClient();

    static HttpRequest.Builder post(String path) {
        return HttpRequest.newBuilder(URI.create(BASE + path)).header("Authorization", "Bearer " + TOKEN);
    }

    static void check(String path, int status, String body) {
        if (status / 100 == 2) {
            return;
        }
        System.err.println("envelopd_client: POST " + path + ": HTTP " + status + ": " + body.strip());
        System.exit(1);
    }

    static void stream(String path, Path in, Path out) throws IOException, InterruptedException {
        Path tmp = out.resolveSibling(out.getFileName() + ".part");
        HttpRequest req = post(path).header("Content-Type", "application/octet-stream")
                .POST(HttpRequest.BodyPublishers.ofFile(in)).build();
        try {
            // ofFile completes only when the whole body arrived: a transfer
            // the daemon broke off (its signal of a failed stream) throws.
            HttpResponse<Path> resp = HTTP.send(req, HttpResponse.BodyHandlers.ofFile(tmp));
            if (resp.statusCode() / 100 != 2) {
                String body = Files.readString(tmp);
                Files.deleteIfExists(tmp);
                check(path, resp.statusCode(), body);
            }
            Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }

    static String tenantPath(String tenant, String op) {
        return "/v1/tenants/" + URLEncoder.encode(tenant, StandardCharsets.UTF_8) + "/" + op;
    }

    public static void main(String[] args) throws Exception {
        try {
            if (args.length == 4 && args[0].equals("encrypt")) {
                stream(tenantPath(args[1], "encrypt"), Path.of(args[2]), Path.of(args[3]));
            } else if (args.length == 3 && args[0].equals("decrypt")) {
                stream("/v1/decrypt", Path.of(args[1]), Path.of(args[2]));
            } else if (args.length == 2 && args[0].equals("datakey")) {
                String path = tenantPath(args[1], "datakey");
                HttpResponse<String> resp = HTTP.send(post(path).header("Content-Type", "application/json")
                        .POST(HttpRequest.BodyPublishers.ofString("{}")).build(), HttpResponse.BodyHandlers.ofString());
                check(path, resp.statusCode(), resp.body());
                System.out.print(resp.body());
            } else {
                System.err.println("usage: java Client.java encrypt TENANT IN OUT | decrypt IN OUT | datakey TENANT");
                System.exit(2);
            }
        } catch (IOException e) {
            System.err.println("envelopd_client: " + e);
            System.exit(1);
        }
    }
}
