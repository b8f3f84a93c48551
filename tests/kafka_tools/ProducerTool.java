import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Iterator;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Kafka's own Java producer, driven by the tests: records as Java applications write them
 * (every codec, headers, null keys and values, transactions committed and aborted).
 *
 * <p>Arguments: producer properties as key=value (bootstrap.servers, compression.type,
 * transactional.id, ...). Then one JSON object per line on stdin, each answered by one JSON line
 * on stdout:
 *
 * <ul>
 *   <li>{"op":"send","topic":T,"partition":P,"key":K,"value":V,"headers":[[name,value],...]}:
 *       K and V are UTF-8 strings or null (V as "value_b64" for binary); a header value may be
 *       null. Answers {"offset":O,"partition":P} once acknowledged.
 *   <li>{"op":"begin"}, {"op":"commit"}, {"op":"abort"}: the transaction calls (initTransactions
 *       runs first when transactional.id is set).
 *   <li>{"op":"flush"}.
 * </ul>
 */
public class ProducerTool {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        for (String a : args) {
            int eq = a.indexOf('=');
            props.put(a.substring(0, eq), a.substring(eq + 1));
        }
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        ObjectMapper json = new ObjectMapper();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            if (props.containsKey("transactional.id")) {
                producer.initTransactions();
            }
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                JsonNode req = json.readTree(line);
                ObjectNode reply = json.createObjectNode();
                try {
                    switch (req.get("op").asText()) {
                        case "send":
                            RecordMetadata md = producer.send(record(req)).get();
                            reply.put("offset", md.offset());
                            reply.put("partition", md.partition());
                            break;
                        case "begin":
                            producer.beginTransaction();
                            break;
                        case "commit":
                            producer.commitTransaction();
                            break;
                        case "abort":
                            producer.abortTransaction();
                            break;
                        case "flush":
                            producer.flush();
                            break;
                        default:
                            throw new IllegalArgumentException("unknown op " + req.get("op"));
                    }
                    reply.put("ok", true);
                } catch (Exception e) {
                    reply.put("ok", false);
                    reply.put("error", e.toString());
                }
                System.out.println(json.writeValueAsString(reply));
                System.out.flush();
            }
        }
    }

    private static byte[] bytes(JsonNode node, String text, String b64) {
        if (node.has(b64)) {
            return Base64.getDecoder().decode(node.get(b64).asText());
        }
        JsonNode v = node.get(text);
        return v == null || v.isNull() ? null : v.asText().getBytes(StandardCharsets.UTF_8);
    }

    private static ProducerRecord<byte[], byte[]> record(JsonNode req) {
        RecordHeaders headers = new RecordHeaders();
        JsonNode hs = req.get("headers");
        if (hs != null) {
            for (JsonNode h : hs) {
                JsonNode v = h.get(1);
                headers.add(h.get(0).asText(), v.isNull() ? null : v.asText().getBytes(StandardCharsets.UTF_8));
            }
        }
        Integer partition = req.has("partition") ? req.get("partition").asInt() : null;
        return new ProducerRecord<>(req.get("topic").asText(), partition, null,
                bytes(req, "key", "key_b64"), bytes(req, "value", "value_b64"), headers);
    }
}
